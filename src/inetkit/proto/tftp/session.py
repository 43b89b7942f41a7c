"""Sans-IO TFTP transfer state machines, shared by the server and the client.

A session never touches a socket or a clock.  The driver feeds it every
datagram from the peer's TID with the current time and sends whatever it
returns (to that TID); it calls ``on_timer(now)`` once ``now`` reaches
``next_deadline()``.  Filtering datagrams from other TIDs (ERROR 5) is the
driver's job, because only it sees addresses.

``Sender`` sends a file (server RRQ, client WRQ); ``Receiver`` receives one
(server WRQ, client RRQ).  The same classes serve both roles: a client
session starts by sending its request and learns the settings from the
reply (OACK, or plain DATA/ACK when the server ignores options, RFC 2347
section 2: then RFC 1350 defaults apply); a server session starts with the
OACK (or directly with DATA 1 / ACK 0) after ``options.negotiate``.

Behaviour worth knowing:

- **Block numbers** are 16 bits on the wire; internally blocks are counted
  without bound and the wire number is ``index & 0xFFFF``, so after block
  65535 comes block 0 (what curl, tftp-hpa and atftp expect).  Incoming block
  numbers are interpreted relative to the expected one (a window of 32768
  blocks back is "old", forward is "ahead").
- **Retransmission**: RTT-adaptive (RFC 6298 estimator, Karn's rule: no
  samples from retransmitted blocks), starting at the negotiated (RFC 2349)
  or default timeout, doubling on each expiry.  A transfer fails when no
  progress happened for ``give_up`` seconds or after ``max_retries``
  consecutive expiries.
- **No Sorcerer's Apprentice** (RFC 1123 section 4.2.3.1): a sender ignores
  duplicate ACKs; it only retransmits when its timer expires.  A receiver
  answers old (duplicate) DATA with its last ACK, once per burst (only a
  block that comes after a pause of ``REACK_GAP`` starts a new one), so
  duplicates cannot multiply.
- **Windows** (RFC 7440): the sender sends ``windowsize`` blocks, then waits.
  An ACK for a block inside the window (the receiver saw a gap) makes it
  resend from the first unacknowledged block only, and so does a repeated
  ACK of the block before the window when it can be the receiver's answer
  to this window (a gap at the window's first block), once per window;
  1.5 round trips after a window without an answer it resends the window's
  last block alone (a tail-loss probe: a lost last block or ACK then costs
  an RTT, not an RTO), and again after twice that wait while the RTO is
  further off (the probe or its answer may be lost too).
  The receiver ACKs after
  ``windowsize`` in-order blocks since its last ACK, on the final block,
  once per gap, and when a window stops arriving mid-way for several of its
  usual gaps between blocks (its tail was lost).
- **Dally**: after the final ACK a server receiver keeps answering
  retransmissions of the final DATA for ``dally`` seconds (its ACK may have
  been lost); ``complete`` is true as soon as all data arrived.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from inetkit.errors import LocalProtocolError, RemoteProtocolError
from inetkit.proto.tftp import packets as P
from inetkit.proto.tftp.options import Settings, accept_oack

_HH = struct.Struct("!HH")
#: blocks at most in one ``Sender.steady_run``
STEADY_RUN = 256
_NO_RUN: tuple[list[bytes], list[bytes]] = ([], [])
_DATA = P.DATA
_ACK = P.ACK

#: default floor and ceiling of the adaptive retransmission timeout
MIN_RTO = 0.002
MAX_RTO = 4.0
#: floor of the tail-loss probe timeout (through the bench's loss relay a
#: window's answer takes 0.3-0.6 ms: a 1 ms floor made every tail loss wait)
MIN_PTO = 0.0003
#: without an RTT sample, a duplicate ACK this soon after its window is a copy
DUP_GUARD = 0.001
#: from this datagram size on, a Receiver hands its sink a memoryview, not a copy
BIG_BLOCK = 8192
#: a window that stops arriving for this many times the usual gap between its
#: blocks (but at least STALL_MIN seconds) has lost its tail: ACK what arrived
STALL_FACTOR = 8.0
STALL_MIN = 0.0003
#: a receiver answers duplicate DATA, or DATA beyond a gap, once per burst: a
#: datagram after a pause this long starts a new burst.  A pause, not the time
#: since our last ACK: a slow hop spreads a window over more than any fixed
#: time (with 0.5 ms since the last ACK, tftpsim collapsed at 40 us per
#: datagram: each repeated gap ACK made the sender resend a window).  Short,
#: because a sender that lost our answer probes after 1.5 round trips and the
#: probe must get one (0.5 ms cost ~10 % under 5 % loss)
REACK_GAP = 0.00015


class BlockSource(Protocol):
    """Where a Sender's blocks come from (1-based block index)."""

    def block(self, index: int) -> bytes:
        """Payload of block ``index``; shorter than blksize means it is the last."""

    def release(self, below: int) -> None:
        """Blocks below ``below`` will never be asked for again."""


class Abort(Exception):
    """Raised by a sink or source to end the transfer with ERROR ``code``."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Failure:
    """Why a transfer ended early.  ``remote``: the peer sent ERROR ``code``."""

    code: int
    message: str
    remote: bool = False

    def describe(self) -> str:
        if self.remote:
            return "peer sent ERROR: " + P.describe_error(self.code, self.message)
        return self.message


class _Session:
    """Timers, RTT estimation and failure handling common to both directions."""

    def __init__(
        self,
        settings: Settings,
        now: float,
        *,
        request: bytes | None = None,
        requested: dict[str, str] | None = None,
        first: bytes | None = None,
        min_rto: float = MIN_RTO,
        max_rto: float = MAX_RTO,
        max_retries: int = 50,
        give_up: float | None = None,
    ) -> None:
        self.settings = settings
        self.blksize = settings.blksize
        self.windowsize = settings.windowsize
        #: the transfer size announced (tsize), when known
        self.expected_size = settings.tsize
        self.min_rto = min_rto
        self.max_rto = max(max_rto, settings.timeout)
        self.rto = settings.timeout
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.max_retries = max_retries
        self.give_up = give_up if give_up is not None else max(5.0, 5 * settings.timeout)
        self.retries = 0
        self.retransmissions = 0
        self.last_progress = now
        self.deadline: float | None = None
        #: True once every byte was transferred and acknowledged as required
        self.complete = False
        #: True once the session needs no more datagrams or timers
        self.finished = False
        self.failure: Failure | None = None
        #: payload bytes moved so far
        self.bytes = 0
        #: client: the server answered our options with an OACK
        self.negotiated = False
        self._request = request  # client: RRQ/WRQ to send until the server replies
        self._requested = requested or {}
        self._first = first  # server: OACK / ACK 0 to (re)send before the transfer proper
        self._last_sent: list[bytes] = []

    # -- the driver's interface -------------------------------------------------------
    def next_deadline(self) -> float | None:
        return None if self.finished else self.deadline

    def abort(self, code: int, message: str) -> list[bytes]:
        """End the transfer locally; returns the ERROR datagram to send."""
        if self.finished:
            return []
        self._fail(Failure(code, message))
        return [P.encode_error(code, message)]

    def on_timer(self, now: float) -> list[bytes]:
        if self.finished or self.deadline is None or now < self.deadline:
            return []
        return self._expired(now)

    def _expired(self, now: float) -> list[bytes]:
        """The deadline passed (each direction retransmits its own way)."""
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------------------
    def _fail(self, failure: Failure) -> None:
        self.failure = failure
        self.finished = True
        self.deadline = None

    def _sample(self, rtt: float) -> None:
        """RFC 6298 section 2 estimator, floored at ``min_rto``.

        A reply that comes only once our own timer was due is ambiguous even
        when we have not retransmitted yet (Karn's rule, RFC 6298 section 3):
        with both sides on the same 1 s default it is usually the *peer's*
        retransmission (our request arrived, its first reply was lost), and a
        1 s "RTT" would keep the RTO at its ceiling for the whole transfer.
        Such a sample is dropped."""
        if rtt >= self.rto:
            return
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self._restore_rto()

    def _restore_rto(self) -> None:
        """RTO from the estimator: after a sample, and when progress resumes after
        a backoff (on loopback a loss, not congestion, is the usual cause)."""
        if self.srtt is not None:
            rto = self.srtt + max(0.001, 4 * self.rttvar)
            self.rto = min(self.max_rto, max(self.min_rto, rto))

    def _backoff(self, now: float) -> bool:
        """One more expiry: False when the transfer must give up."""
        self.retries += 1
        self.retransmissions += 1
        if self.retries > self.max_retries or now - self.last_progress >= self.give_up:
            return False
        self.rto = min(self.max_rto, self.rto * 2)
        return True

    def _timed_out(self) -> list[bytes]:
        msg = f"timed out after {self.retries - 1} retransmissions"
        self._fail(Failure(P.ERR_UNDEFINED, msg))
        return [P.encode_error(P.ERR_UNDEFINED, "transfer timed out")]

    def _protocol_error(self, exc: RemoteProtocolError) -> list[bytes]:
        code = exc.code if exc.code is not None else P.ERR_ILLEGAL
        return self.abort(code, str(exc))

    def _remote_error(self, packet: P.Error) -> list[bytes]:
        self._fail(Failure(packet.code, packet.message, remote=True))
        return []

    def _configure(self, settings: Settings) -> None:
        self.settings = settings
        self.blksize = settings.blksize
        self.windowsize = settings.windowsize
        self.expected_size = settings.tsize

    def _accept_reply_options(self, packet: P.OAck) -> Settings:
        return accept_oack(self._requested, packet.options, default_timeout=self.settings.timeout)

    def _defaults(self) -> Settings:
        """The server ignored our options: RFC 1350 settings, our timeout."""
        return Settings(timeout=self.settings.timeout)


class Sender(_Session):
    """Sends the blocks of ``source``.

    Server: ``Sender(source, settings, now, first=OACK-or-None)``.
    Client: ``Sender(source, settings, now, request=WRQ, requested=options)``;
    ``settings`` then only supplies the timeout until the server answers.
    """

    def __init__(self, source: BlockSource, settings: Settings, now: float, **kwargs: object) -> None:
        super().__init__(settings, now, **kwargs)  # type: ignore[arg-type]
        self._block = source.block
        self._release = source.release
        #: the source's bulk read (``OctetSource.blocks``), if it has one
        self._blocks: Callable[[int, int], list[bytes]] | None = getattr(source, "blocks", None)
        #: the block of the current steady run that is the file's short last one (None: none)
        self._run_short: int | None = None
        #: first block not yet acknowledged
        self.base = 1
        #: highest block sent so far (0: none)
        self.sent_max = 0
        #: index of the last block, once a short block was read
        self.last_index: int | None = None
        self._tlp = False  # the current deadline is a tail-loss probe, not the RTO
        self._pto = 0.0  # the wait before the current tail-loss probe
        self._rto_at = 0.0
        self._probe = 0  # block whose ACK gives an RTT sample (0: none)
        self._probe_at = 0.0
        self._started = False  # DATA phase begun
        self._window_at = now  # when the current window was last (re)sent
        self._fast_resent = 0  # base whose window a duplicate ACK already resent (0: none)
        #: lock-step, started, unfinished: the ACK of the one outstanding full
        #: block, which ``lockstep_ack`` answers (None: not in that state)
        self._steady_ack: bytes | None = None
        #: the next window made ahead of time (see ``prepare``): first block,
        #: datagrams, index of a short block among them or None
        self._prepared: tuple[int, list[bytes], int | None] | None = None

    def _fail(self, failure: Failure) -> None:
        self._steady_ack = None
        super()._fail(failure)

    def replace_source(self, source: BlockSource) -> None:
        """Take blocks from ``source`` from now on (a client that learns its
        blksize only from the OACK makes its real source then)."""
        self._block = source.block
        self._release = source.release
        self._blocks = getattr(source, "blocks", None)

    def start(self, now: float) -> list[bytes]:
        if self._request is not None:
            out = [self._request]
        elif self._first is not None:
            out = [self._first]
        else:
            self._started = True
            return self._send_window(now)
        self._last_sent = out
        self.deadline = now + self.rto
        return out

    def _payload(self, index: int) -> bytes:
        payload = self._block(index)
        if len(payload) < self.blksize:
            self.last_index = index
        elif len(payload) > self.blksize:
            raise LocalProtocolError(f"block source gave {len(payload)} bytes for blksize {self.blksize}")
        return payload

    def _make_window(self, first: int) -> tuple[list[bytes], int | None]:
        """The DATA datagrams of blocks first .. first+windowsize-1, stopping
        after a short block (whose index is returned too, else None).
        Raises what the source raises."""
        out = []
        index = first
        stop = first + self.windowsize
        pack = _HH.pack
        block = self._block
        blksize = self.blksize
        # _payload() inlined: this loop runs once per block of every window
        while index < stop:
            payload = block(index)
            size = len(payload)
            out.append(pack(_DATA, index & 0xFFFF) + payload)
            if size != blksize:
                if size > blksize:
                    raise LocalProtocolError(f"block source gave {size} bytes for blksize {blksize}")
                return out, index
            index += 1
        return out, None

    def prepare(self) -> None:
        """Build the next window ahead of time: the one that starts after the
        last block sent, used by ``_send_window`` when the ACK of everything
        sent arrives (the usual case).

        Why: RFC 7440 windows are lock-step at window level (the sender waits
        for the ACK), so the time between the ACK and the next window's first
        datagram is on every window's round trip.  A driver calls this after
        sending, before it waits: reading and framing the blocks then overlaps
        the receiver's work.  Lock-step (windowsize 1) has no use for it (no
        other CPU to overlap with when client and server share one), nor has
        a source error here: it is left for ``_send_window`` to report.
        """
        first = self.sent_max + 1
        if self.windowsize == 1 or self.finished or not self._started or self.last_index is not None \
                or (self._prepared is not None and self._prepared[0] == first):
            return
        try:
            out, short = self._make_window(first)
        except (Abort, OSError, LocalProtocolError):
            self._prepared = None
            return
        self._prepared = (first, out, short)

    def _send_window(self, now: float) -> list[bytes]:
        """Send blocks base .. base+windowsize-1 (stopping after the last)."""
        prepared = self._prepared
        if prepared is not None and prepared[0] == self.base:
            self._prepared = None
            out, short = prepared[1], prepared[2]
        else:
            try:
                out, short = self._make_window(self.base)
            except Abort as exc:
                return self.abort(exc.code, exc.message)
            except OSError as exc:
                return self.abort(P.ERR_UNDEFINED, f"read error: {exc.strerror or exc}")
        if short is not None:
            self.last_index = short
        index = self.base + len(out)
        last = index - 1
        if last > self.sent_max:
            # the window's last block goes out for the first time: its ACK is an
            # unambiguous RTT sample (Karn), even if earlier blocks were resent
            if not self._probe:
                self._probe, self._probe_at = last, now
            self.sent_max = last
        self._rto_at = now + self.rto
        self._window_at = now
        self._steady_ack = _HH.pack(_ACK, self.base & 0xFFFF) if self.windowsize == 1 and self.last_index is None else None
        if self.windowsize > 1 and self.srtt is not None:
            # tail-loss probe (in the spirit of RFC 8985): when the window's last
            # block or its ACK is lost, the receiver has nothing to answer; resend
            # that one block after 1.5 round trips instead of waiting a full RTO
            # (the RTT sample already includes the window's queueing)
            pto = max(MIN_PTO, 1.5 * self.srtt)
            if pto < self.rto:
                self._tlp = True
                self._pto = pto
                self.deadline = now + pto
                return out
        self._tlp = False
        self.deadline = self._rto_at
        return out

    def _expired(self, now: float) -> list[bytes]:
        if self._tlp and self._started:
            # the probe (or its answer) may be lost too: probe again after twice
            # the wait while that comes before the RTO (whose floor is several
            # round trips on loopback), then leave it to the RTO
            self._pto *= 2
            if now + self._pto < self._rto_at:
                self.deadline = now + self._pto
            else:
                self._tlp = False
                self.deadline = max(self._rto_at, now + MIN_PTO)
            if self._probe == self.sent_max:
                self._probe = 0  # Karn: that block is being sent twice
            try:
                return [_HH.pack(_DATA, self.sent_max & 0xFFFF) + self._payload(self.sent_max)]
            except Abort as exc:
                return self.abort(exc.code, exc.message)
            except OSError as exc:
                return self.abort(P.ERR_UNDEFINED, f"read error: {exc.strerror or exc}")
        if not self._backoff(now):
            return self._timed_out()
        self._probe = 0  # Karn: no sample from a retransmitted window
        if not self._started:
            self.deadline = now + self.rto
            return self._last_sent
        return self._send_window(now)

    def receive(self, data: bytes, now: float) -> list[bytes]:
        if self.finished:
            return []
        if data == self._steady_ack:
            # lock-step: the one outstanding full block is acknowledged
            return [self.lockstep_ack(data, now)]  # type: ignore[list-item]
        # fast path: an ACK during the transfer proper
        if self._started and len(data) == 4 and data[0] == 0 and data[1] == _ACK:
            return self._ack((data[2] << 8) | data[3], now)
        try:
            packet = P.decode(data)
        except RemoteProtocolError as exc:
            return self._protocol_error(exc)
        if isinstance(packet, P.Error):
            return self._remote_error(packet)
        if self._started:
            if isinstance(packet, P.OAck) and self._request is not None:
                return []  # a duplicate OACK (our DATA 1 crossed it): harmless
            if isinstance(packet, P.Request):
                return []  # a retransmitted request that reached us: ignore
            return self.abort(P.ERR_ILLEGAL, f"unexpected {P.OPCODE_NAMES.get(data[1], 'packet')} while sending")
        # before the DATA phase
        if self._request is not None:  # client waiting for the reply to WRQ
            if isinstance(packet, P.OAck):
                try:
                    self._configure(self._accept_reply_options(packet))
                except RemoteProtocolError as exc:
                    return self._protocol_error(exc)
                self.negotiated = True
            elif isinstance(packet, P.Ack) and packet.block == 0:
                self._configure(self._defaults())
            else:
                return []
            if self.retries == 0:  # Karn: only a reply to the first transmission is a sample
                self._sample(now - self.last_progress)
            self._begin(now)
            return self._send_window(now)
        # server waiting for ACK 0 of its OACK
        if isinstance(packet, P.Ack):
            if packet.block != 0:
                return []
            if self.retries == 0:
                self._sample(now - self.last_progress)
            self._begin(now)
            return self._send_window(now)
        if isinstance(packet, P.Request):
            return []
        return self.abort(P.ERR_ILLEGAL, f"expected ACK 0, got {type(packet).__name__}")

    def _begin(self, now: float) -> None:
        self._started = True
        self.retries = 0
        self.last_progress = now

    def lockstep_ack(self, data: bytes, now: float) -> bytes | None:
        """The lock-step hot path: when ``data`` (a datagram from the peer) is
        the ACK of the one outstanding full block, returns the next DATA to
        send; otherwise None and nothing changed (the driver then calls
        ``receive``, which handles every other case).

        Why a method of its own: lock-step TFTP is round-trip bound and the
        per-block Python decides its throughput (client and server usually
        share a CPU).  One bytes comparison with the exact ACK expected
        (``_steady_ack``, kept by ``_send_window`` and here; None when not
        lock-step, not started, finished or after the last block) stands for
        the length, opcode and block number checks and ``receive``'s
        dispatch; the source hears what it may drop every 16 blocks only.
        """
        if data != self._steady_ack:
            return None
        if self._probe:
            self._sample(now - self._probe_at)
            self._probe = 0
        if self.retries:
            self.retries = 0
            self._restore_rto()
        blksize = self.blksize
        self.bytes += blksize
        self.last_progress = now
        index = self.base + 1
        self.base = self.sent_max = index
        try:
            payload = self._block(index)
        except Abort as exc:
            return self.abort(exc.code, exc.message)[0]
        except OSError as exc:
            return self.abort(P.ERR_UNDEFINED, f"read error: {exc.strerror or exc}")[0]
        wire = index & 0xFFFF
        if len(payload) == blksize:
            self._steady_ack = _HH.pack(_ACK, wire)
        else:
            if len(payload) > blksize:
                return self.abort(P.ERR_UNDEFINED, f"block source gave {len(payload)} bytes for blksize {blksize}")[0]
            self.last_index = index
            self._steady_ack = None
        if not index & 15:
            # an RTT sample every 16 blocks is plenty (each costs ~1 us), and the
            # source may drop what lies below as rarely
            self._release(index)
            self._probe = index
            self._probe_at = now
        self.deadline = now + self.rto
        return _HH.pack(_DATA, wire) + payload

    def steady_run(self) -> tuple[list[bytes], list[bytes]]:
        """Lock-step in bulk: ``(acks, datas)``, where ``acks[j]`` is the ACK of
        block base+j and ``datas[j]`` the DATA of block base+j+1 that answers
        it, for as many blocks as the source has read ahead (the last may be
        the file's short final block).  Both empty when not in steady
        lock-step, or when the source has no bulk read or fails (the
        per-block ``lockstep_ack`` then goes on, and reports any error).

        The driver sends ``datas[j]`` for each ``acks[j]`` that arrives in
        turn, nothing else in between, and then says how many with
        ``steady_acked``.  Why: per block that is a bytes comparison and a
        send, where ``lockstep_ack`` keeps the whole state up to date every
        block; lock-step TFTP's throughput is its per-block CPU (issue 5)."""
        blocks = self._blocks
        if self._steady_ack is None or self.retries or blocks is None:
            return _NO_RUN
        base = self.base
        try:
            payloads = blocks(base + 1, STEADY_RUN)
        except (Abort, OSError):
            return _NO_RUN
        blksize = self.blksize
        self._run_short = None
        for j, payload in enumerate(payloads):
            if len(payload) != blksize:
                if len(payload) > blksize:
                    return _NO_RUN
                del payloads[j + 1:]
                self._run_short = base + 1 + j
                break
        pack = _HH.pack
        acks = [pack(_ACK, index & 0xFFFF) for index in range(base, base + len(payloads))]
        datas = [pack(_DATA, index & 0xFFFF) + payload for index, payload in enumerate(payloads, base + 1)]
        return acks, datas

    def steady_acked(self, count: int, now: float, started: float) -> None:
        """The driver got the first ``count`` ACKs of the last ``steady_run``
        and sent their answers, the first ACK waited for from ``started`` on
        and the last at ``now``: the state ``lockstep_ack`` would have after
        as many calls (the run's mean round trip is the RTT sample)."""
        if not count:
            return
        self._probe = 0  # the run's own sample replaces a pending one
        self._sample((now - started) / count)
        self.bytes += count * self.blksize  # the ACKs were all of full blocks
        self.last_progress = now
        base = self.base = self.sent_max = self.base + count
        if base == self._run_short:
            self.last_index = base
            self._steady_ack = None
        else:
            self._steady_ack = _HH.pack(_ACK, base & 0xFFFF)
        self._release(base)
        self.deadline = now + self.rto

    def _ack(self, wire: int, now: float) -> list[bytes]:
        base = self.base
        acked_before = base - 1
        delta = (wire - acked_before) & 0xFFFF
        if delta == 0:
            return self._duplicate_ack(now)
        if delta > self.sent_max - acked_before:
            return []  # out-of-window ACK: never answer it (Sorcerer's Apprentice)
        acked = acked_before + delta
        if self._probe and acked >= self._probe:
            self._sample(now - self._probe_at)
            self._probe = 0
        self.bytes += self._acked_bytes(acked_before + 1, acked)
        self.base = acked + 1
        if self.retries:
            self.retries = 0
            self._restore_rto()
        self.last_progress = now
        self._release(self.base)
        if acked == self.last_index:
            self.complete = True
            self.finished = True
            self.deadline = None
            return []
        return self._send_window(now)

    def _duplicate_ack(self, now: float) -> list[bytes]:
        """An ACK for ``base - 1`` again.

        Lock-step: never answered (RFC 1123 section 4.2.3.1, the Sorcerer's
        Apprentice).  Windowed (RFC 7440 section 4): the receiver ACKs the
        last in-order block when it sees a gap, and when that gap is the
        window's *first* block its ACK repeats the one that opened the window.
        Ignoring it cost a whole RTO per such loss (measured: most of the
        slow-down under 5 % loss).  So a duplicate resends the window from
        ``base`` at once, but only when it can be an answer to the current
        window (it came at least a quarter round trip after the window left; a
        network copy of the previous ACK comes right behind the original) and
        at most once per ``base``, so copies can never multiply.
        """
        if self.windowsize == 1 or self.sent_max < self.base:
            return []
        # no RTT sample yet (the first exchange needed a retransmission, so Karn's
        # rule allowed none): 1 ms still tells a copy from an answer, and waiting
        # for the RTO instead would mean the unsampled 1-2 s per loss
        guard = self.srtt / 4 if self.srtt is not None else DUP_GUARD
        if self._fast_resent == self.base or now - self._window_at < guard:
            return []
        self._fast_resent = self.base
        self._probe = 0  # Karn: these blocks are being sent again
        self.retransmissions += 1
        return self._send_window(now)

    def _acked_bytes(self, first: int, last: int) -> int:
        count = last - first + 1
        if self.last_index is not None and last == self.last_index:
            return (count - 1) * self.blksize + self._last_len
        return count * self.blksize

    @property
    def _last_len(self) -> int:
        assert self.last_index is not None
        return len(self._block(self.last_index))


class Receiver(_Session):
    """Receives blocks into ``sink`` (a callable taking each payload in order,
    as bytes or, for large blocks, a memoryview of the received datagram).

    Server: ``Receiver(sink, settings, now, first=OACK or ACK 0, dally=...)``.
    Client: ``Receiver(sink, settings, now, request=RRQ, requested=options)``.
    """

    def __init__(self, sink: Callable[[Any], object], settings: Settings, now: float, *, dally: float = 0.0, **kwargs: object) -> None:
        super().__init__(settings, now, **kwargs)  # type: ignore[arg-type]
        self._sink = sink
        self.dally = dally
        #: the driver's choice: ``receive_burst`` holds the payloads of a burst
        #: back until ``write_deferred`` (see there), so the ACK leaves first
        self.defer_writes = False
        self._deferring = False  # inside a deferring receive_burst
        self._pending: list[bytes | memoryview] = []  # payloads held back, in order
        #: next block expected (1-based, unbounded)
        self.next = 1
        self._since_ack = 0
        self._gap_acked = False
        self._last_ack = P.encode_ack(0)
        self._last_ack_at = now
        self._rx_at = now  # when the last DATA arrived (a pause before a block: see _data)
        self._ack_fresh = False  # last ACK was sent once only (RTT sample allowed)
        self._started = False  # a DATA phase began (client: the server replied)
        self._dallying = False
        self._stall = False  # the deadline is a stalled-window probe, not the RTO
        self._block_at = now  # when the last in-order block arrived
        self._gap = 0.0  # smoothed time between in-order blocks of a window
        # the stall probe's thresholds (grow when a probe proves premature) and
        # the last probe: when it went out and the block it asked for
        self._stall_factor = STALL_FACTOR
        self._stall_min = STALL_MIN
        self._probed_at: float | None = None
        self._probed_for = 0
        #: a block went missing in this transfer (only then are stalls probed:
        #: a sender that pauses mid-window, as atftpd does every MiB, loses none)
        self._lossy = False

    def start(self, now: float) -> list[bytes]:
        if self._request is not None:
            out = [self._request]
        else:
            out = [self._first if self._first is not None else P.encode_ack(0)]
            self._started = True
            self._last_ack = out[0]
            self._ack_fresh = True
        self._last_ack_at = now
        self.deadline = now + self.rto
        return out

    def _send_ack(self, index: int, now: float) -> list[bytes]:
        ack = _HH.pack(_ACK, index & 0xFFFF)
        self._last_ack = ack
        self._last_ack_at = now
        self._ack_fresh = True
        self._since_ack = 0
        return [ack]

    def _expired(self, now: float) -> list[bytes]:
        if self._dallying:
            self.finished = True
            self.deadline = None
            return []
        if self._stall:
            # the window stalled (see _arm): not a timeout, no backoff
            self._stall = False
            self.deadline = now + self.rto
            self._ack_fresh = False
            self._probed_at, self._probed_for = now, self.next
            return self._reack(now)
        if not self._backoff(now):
            return self._timed_out()
        self._lossy = True
        self.deadline = now + self.rto
        if not self._started:
            return [self._request] if self._request is not None else []
        out = self._reack(now)
        self._ack_fresh = False
        return out

    def _reack(self, now: float) -> list[bytes]:
        """Acknowledge everything received in order so far (the sender realigns
        its window on it); before DATA 1 that is the OACK or ACK 0 again."""
        if self.next == 1:
            ack = self._last_ack
        else:
            ack = _HH.pack(_ACK, (self.next - 1) & 0xFFFF)
            self._last_ack = ack
        self._last_ack_at = now
        self._since_ack = 0
        return [ack]

    def receive(self, data: bytes, now: float) -> list[bytes]:
        if self.finished:
            return []
        if self._started and len(data) >= 4 and data[0] == 0 and data[1] == _DATA:
            # a large block is passed on as a view of the datagram (immutable, so
            # safe to keep): copying 64 KiB per block shows at blksize 65464
            payload = data[4:] if len(data) < BIG_BLOCK else memoryview(data)[4:]
            return self._data((data[2] << 8) | data[3], payload, now)
        try:
            packet = P.decode(data)
        except RemoteProtocolError as exc:
            if self._dallying:
                return []
            return self._protocol_error(exc)
        if isinstance(packet, P.Error):
            if self._dallying:
                self.finished = True
                self.deadline = None
                return []
            return self._remote_error(packet)
        if isinstance(packet, P.Request):
            return []
        if isinstance(packet, P.OAck) and self._request is not None:
            if not self._started:
                try:
                    self._configure(self._accept_reply_options(packet))
                except RemoteProtocolError as exc:
                    return self._protocol_error(exc)
                self.negotiated = True
                if self.retries == 0:
                    self._sample(now - self._last_ack_at)
                self._started = True
                self.retries = 0
                self.last_progress = now
                self.deadline = now + self.rto
                return self._send_ack(0, now)
            if self.next == 1:
                return self._reack(now)  # our ACK 0 was lost: the server resent its OACK
            return []
        if isinstance(packet, P.Data) and not self._started:
            if packet.block != 1:
                return []
            self._configure(self._defaults())  # server ignored our options (RFC 2347)
            self._started = True
            return self._data(1, packet.payload, now)
        if self._dallying:
            return []
        return self.abort(P.ERR_ILLEGAL, f"unexpected {type(packet).__name__} while receiving")

    def receive_burst(self, datagrams: list[bytes] | list[memoryview], now: float) -> list[bytes]:
        """Datagrams that arrived together (one UDP GRO read), in order.

        The result is what feeding each to ``receive`` would give, but a run
        of in-order full blocks that needs no ACK goes to the sink as one
        joined write, with the bookkeeping done once: the per-block Python is
        most of a windowed receiver's cost.  Items may be memoryviews (no copy
        per datagram); only the joined run and the other datagrams are copied.
        The first block after an ACK (an RTT sample), the window's last block
        (it gets the ACK), a short final block and anything unusual take the
        ordinary path.  With ``defer_writes`` the full blocks wait for
        ``write_deferred`` (the driver sends the result first).
        """
        out: list[bytes] = []
        if not self._started or self.finished or self._dallying:
            for data in datagrams:
                out += self.receive(data if isinstance(data, bytes) else bytes(data), now)
            return out
        self._deferring = self.defer_writes
        try:
            return self._burst(datagrams, now)
        finally:
            self._deferring = False

    def _burst(self, datagrams: list[bytes] | list[memoryview], now: float) -> list[bytes]:
        out: list[bytes] = []
        run: list[bytes | memoryview] = []
        full = self.blksize + 4
        limit = self.windowsize - 1  # the block that fills the window gets the ACK
        unpack = _HH.unpack_from
        for data in datagrams:
            since = self._since_ack
            if (len(data) == full and since < limit
                    and unpack(data) == (_DATA, self.next & 0xFFFF)
                    and (since or not self._ack_fresh or self.retries)):  # else: an RTT sample
                run.append(data[4:])
                self.next += 1
                self._since_ack = since + 1
                continue
            if run:
                out += self._take_run(run, now)
                run = []
            out += self.receive(data if isinstance(data, bytes) else bytes(data), now)
        if run:
            out += self._take_run(run, now)
        return out

    def _arm(self, now: float) -> None:
        """The timer after an in-order block that did not end its window.

        Windowed, a window's blocks come back to back: when they stop for
        several of their usual gaps, the window's tail (or the sender's copy
        of our last gap ACK) was lost.  ACKing the last in-order block then
        (RFC 7440 section 4: the receiver ACKs the last block received in
        order when something went missing) restarts the sender at once,
        instead of after its tail-loss probe (1.5 RTT) and one more trip.
        Measured through the 5 % loss relay: 0.46-0.58x -> 0.63x of the
        loss-free rate.  Only once a block went missing in this transfer: a
        sender may pause mid-window without losing anything (atftpd does,
        about every MiB), and a probe then only makes it resend; a probe
        that proves premature makes the next wait 4x longer.  Lock-step, or
        the first block: the RTO.
        """
        if self.windowsize > 1 and self._since_ack > 1 and self._lossy:
            gap = now - self._block_at
            self._gap = gap if not self._gap else 0.75 * self._gap + 0.25 * gap
            probe = max(self._stall_min, self._stall_factor * self._gap)
            self._block_at = now
            if probe < self.rto:
                self._stall = True
                self.deadline = now + probe
                return
        self._block_at = now
        self._stall = False
        self.deadline = now + self.rto

    def _check_probe(self, first: int, now: float) -> None:
        """In-order data after a stall probe: when the block it asked for came
        sooner than a resend could (half a round trip), it was only late, not
        lost (a sender that paces its window, as atftpd does): wait 4x longer
        before the next probe, so such a sender is not made to resend."""
        if first == self._probed_for and self._probed_at is not None:
            if now - self._probed_at < max(0.5 * (self.srtt or 0.0), 0.0001):
                self._stall_factor *= 4
                self._stall_min *= 4
        self._probed_at = None

    def _take_run(self, payloads: list[bytes | memoryview], now: float) -> list[bytes]:
        """Hand a run of in-order full blocks (already counted in ``next``) to the sink."""
        if self.finished:
            return []
        if self._probed_at is not None:
            self._check_probe(self.next - len(payloads), now)
        self._rx_at = now
        chunk = b"".join(payloads)
        if self._deferring:
            self._pending.append(chunk)
        else:
            try:
                if self._pending:
                    self._write_pending()
                self._sink(chunk)
            except (Abort, OSError) as exc:
                return self._sink_failed(exc)
        self.bytes += len(chunk)
        if self.retries:
            self.retries = 0
            self._restore_rto()
        self.last_progress = now
        self._gap_acked = False
        self.deadline = now + self.rto
        self._block_at = now
        self._stall = False
        return []

    @property
    def writes_deferred(self) -> bool:
        """``receive_burst`` held payloads back: call ``write_deferred``."""
        return bool(self._pending)

    def write_deferred(self) -> list[bytes]:
        """Hand the payloads a deferring ``receive_burst`` held back to the sink,
        in order; returns the ERROR to send when the sink refused them (the
        transfer then failed; a failed transfer writes nothing more).

        Why: a window is lock-step at window level (RFC 7440: the sender waits
        for the ACK), so a receiver that writes before it ACKs keeps the
        sender idle meanwhile.  With ``defer_writes`` the driver sends the
        burst's ACK first and writes while the next window is on its way.
        The final (short) block is never held back: it and everything before
        it reach the sink before its ACK is returned, so an upload is complete
        (and committed by the driver) before the client hears so.
        """
        if not self._pending:
            return []
        if self.finished:
            self._pending = []
            return []
        try:
            self._write_pending()
        except (Abort, OSError) as exc:
            return self._sink_failed(exc)
        return []

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        sink = self._sink
        for payload in pending:
            sink(payload)

    def _sink_failed(self, exc: Abort | OSError) -> list[bytes]:
        """The ERROR for a sink that refused a block: its own (an Abort, e.g.
        max_size) or the disk's (ENOSPC is RFC 1350's "disk full")."""
        if isinstance(exc, Abort):
            return self.abort(exc.code, exc.message)
        code = P.ERR_DISK_FULL if exc.errno == errno.ENOSPC else P.ERR_UNDEFINED
        return self.abort(code, f"write error: {exc.strerror or exc}")

    def _data(self, wire: int, payload: bytes | memoryview, now: float) -> list[bytes]:
        prev_rx, self._rx_at = self._rx_at, now
        expected = self.next
        delta = (wire - expected) & 0xFFFF
        if delta == 0:
            if self._dallying:
                return []
            if len(payload) > self.blksize:
                return self.abort(P.ERR_ILLEGAL, f"DATA block of {len(payload)} bytes exceeds blksize {self.blksize}")
            if self._ack_fresh and self._since_ack == 0 and self.retries == 0:
                self._sample(now - self._last_ack_at)
                self._ack_fresh = False
            if self._probed_at is not None:
                self._check_probe(expected, now)
            if self._deferring and len(payload) == self.blksize:
                self._pending.append(payload)
            else:
                # the final block is written before its ACK (and what was held
                # back before it): a complete upload is committed before the
                # client hears it is done
                try:
                    if self._pending:
                        self._write_pending()
                    self._sink(payload)
                except (Abort, OSError) as exc:
                    return self._sink_failed(exc)
            self.bytes += len(payload)
            self.next = expected + 1
            if self.retries:
                self.retries = 0
                self._restore_rto()
            self.last_progress = now
            self._gap_acked = False
            if len(payload) < self.blksize:
                self.complete = True
                out = self._send_ack(expected, now)
                if self.dally > 0:
                    self._dallying = True
                    self.deadline = now + self.dally
                else:
                    self.finished = True
                    self.deadline = None
                return out
            self._since_ack += 1
            if self._since_ack >= self.windowsize:
                self.deadline = now + self.rto
                self._stall = False
                return self._send_ack(expected, now)
            self._arm(now)
            return []
        if delta >= 0x8000:
            # an old block: the sender missed our ACK (or the network duplicated it)
            if (now - prev_rx >= REACK_GAP and now - self._last_ack_at >= min(self.rto / 4, REACK_GAP)) \
                    or self._dallying:
                self._ack_fresh = False
                return self._reack(now)
            return []
        if self._dallying:
            return []
        self._lossy = True
        # a block ahead of the expected one: something was lost; ask from the gap,
        # once per burst (again for a block after a pause: that ACK may be lost,
        # and the sender's tail-loss probe then lands here)
        if not self._gap_acked or now - prev_rx >= REACK_GAP:
            self._gap_acked = True
            out = self._send_ack(expected - 1, now)
            self._ack_fresh = False
            return out
        return []
