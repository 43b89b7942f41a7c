"""The ``tftp`` service: a TFTP server (RFC 1350, 2347, 2348, 2349, 7440).

The listening socket only takes requests (RRQ/WRQ).  Each accepted request
gets its own UDP socket, i.e. its own TID (RFC 1350 section 4), driven by an
``asyncio.DatagramProtocol`` that feeds the sans-IO session of
``inetkit.proto.tftp.session`` and keeps one lazily re-armed timer, so many
transfers run side by side in one event loop, each with its own timers.

Safety (what is refused, and with which ERROR code):

- paths are confined to ``root``: absolute names, ``..`` components and
  symlinks resolving outside the root get ERROR 2; so do directories,
  devices, FIFOs and sockets (only regular files are served);
- writes (WRQ) are refused with ERROR 2 unless ``allow_create``; an existing
  file is never replaced (ERROR 6) unless ``allow_overwrite``;
- an upload larger than ``max_size`` (announced by tsize, or seen while
  receiving) gets ERROR 3;
- an upload goes to a hidden temporary file next to its target and is
  renamed into place only after the last block arrived; a broken upload
  (timeout, ERROR from the client, size cap, server stop) leaves nothing;
- at most ``max_per_source`` concurrent transfers per client address
  (ERROR 0 beyond); a retransmitted request from a client that already has
  a transfer is ignored (its transfer answers it);
- a packet from an unknown TID gets ERROR 5 and the transfer carries on.

``root`` empty (the default) means a per-user data directory,
``$XDG_DATA_HOME/inetkit/tftp`` (``~/.local/share/inetkit/tftp``), created
on start, so a plain install serves something harmless out of the box.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from inetkit.errors import RemoteProtocolError
from inetkit.io.addresses import plain_address
from inetkit.io.udp_batch import (
    CMSG_SIZE,
    RECV_SIZE,
    SPIN,
    BatchSender,
    enable_gro,
    precise_waiter,
    split_gro,
    transfer_socket,
)
from inetkit.proto.tftp import netascii
from inetkit.proto.tftp import packets as P
from inetkit.proto.tftp.options import Limits, TsizeTooLarge, negotiate
from inetkit.proto.tftp.packets import MAX_BLKSIZE
from inetkit.proto.tftp.session import Abort, Receiver, Sender
from inetkit.proto.tftp.sources import NetasciiSource, OctetSource, netascii_size
from inetkit.services.base import ConnectionContext, Service, ServiceContext, is_reflection_risk
from inetkit.services.options import Option, non_negative, positive

#: what the thread driver's sender reads per datagram (bytes of <= 512 total come from pymalloc)
SENDER_RECV_SIZE = 479
#: a windowed transfer waits with select() (us precision) below this, SO_RCVTIMEO above
PRECISE_BELOW = 0.05
#: netascii tsize needs a full scan of the file; beyond this size we leave tsize out
NETASCII_TSIZE_SCAN_LIMIT = 64 * 1024 * 1024


def default_root() -> Path:
    """``$XDG_DATA_HOME/inetkit/tftp`` or ``~/.local/share/inetkit/tftp``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "inetkit" / "tftp"


class Refused(Exception):
    """A request we turn down with ERROR ``code``."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


def resolve_path(root: str, filename: str) -> str:
    """The real path of ``filename`` inside ``root`` (itself a realpath), or Refused.

    Refuses absolute names, any ``..`` component (with / or \\ separators) and
    names whose symlinks lead outside the root.  The target need not exist.
    """
    if "\0" in filename or not filename:
        raise Refused(P.ERR_ACCESS, "invalid file name")
    if filename.startswith(("/", "\\")) or (len(filename) > 1 and filename[1] == ":"):
        raise Refused(P.ERR_ACCESS, f"absolute path {filename!r} refused: names are relative to the TFTP root")
    parts = filename.replace("\\", "/").split("/")
    if ".." in parts:
        raise Refused(P.ERR_ACCESS, f"'..' in {filename!r} refused: names must stay inside the TFTP root")
    real = os.path.realpath(os.path.join(root, filename))
    if real != root and not real.startswith(root + os.sep):
        raise Refused(P.ERR_ACCESS, f"{filename!r} leads outside the TFTP root (symlink)")
    return real


class _Upload:
    """The temporary file of a WRQ, committed by rename when complete."""

    def __init__(self, final: str, netascii_mode: bool, max_size: int | None, overwrite: bool) -> None:
        self.final = final
        self.overwrite = overwrite
        self.max_size = max_size
        directory, base = os.path.split(final)
        self.temp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tftp-part")
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.file = os.fdopen(fd, "wb", buffering=1 << 20)
        self.size = 0
        self.decoder = netascii.Decoder() if netascii_mode else None
        self.done = False

    def write(self, payload: bytes) -> None:
        if self.decoder is not None:
            payload = self.decoder.feed(payload)
        self.size += len(payload)
        if self.max_size is not None and self.size > self.max_size:
            raise Abort(P.ERR_DISK_FULL, f"file exceeds the server's limit of {self.max_size} bytes")
        self.file.write(payload)

    def commit(self) -> None:
        """Put the file in place (no-clobber unless overwrite); raises Refused."""
        if self.decoder is not None:
            self.file.write(self.decoder.flush())
        self.file.close()
        try:
            if self.overwrite:
                os.replace(self.temp, self.final)
            else:
                os.link(self.temp, self.final)  # atomic, fails if a file appeared meanwhile
                os.unlink(self.temp)
        except FileExistsError:
            self.discard()
            raise Refused(P.ERR_EXISTS, "file already exists") from None
        except OSError as exc:
            self.discard()
            raise Refused(P.ERR_ACCESS, f"cannot store file: {exc.strerror}") from None
        self.done = True

    def discard(self) -> None:
        if not self.file.closed:
            try:
                self.file.close()
            except OSError:
                pass
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


class _TransferState:
    """What every transfer holds, whichever driver runs it: its peer, session,
    file and the counters its log line reports."""

    def __init__(self, service: TftpService, peer: Any, session: Sender | Receiver, what: str,
                 fd: int | None = None, upload: _Upload | None = None) -> None:
        self.service = service
        self.peer = peer
        self.session = session
        self.what = what
        self.fd = fd
        self.upload = upload
        self.sock: socket.socket | None = None
        self.started = time.monotonic()
        self.closed = False
        self.dropped = 0
        self.loop = asyncio.get_running_loop()


class _Transfer(_TransferState):
    """One transfer on its own socket (TID): session + timer + file.

    The hot path is lean on purpose (lock-step TFTP is round-trip bound, so
    every microsecond per packet shows): the non-blocking socket is watched
    with ``loop.add_reader`` and read and written directly, without a
    transport's buffering.  A datagram the kernel cannot take right now
    (EAGAIN) is dropped, exactly like a datagram lost on the network: the
    session's retransmission covers it.
    """

    def __init__(self, service: TftpService, peer: Any, session: Sender | Receiver, what: str,
                 fd: int | None = None, upload: _Upload | None = None) -> None:
        super().__init__(service, peer, session, what, fd, upload)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        # a sender only ever reads ACKs and ERRORs; a receiver reads whole blocks
        self._bufsize = 1024 if isinstance(session, Sender) else P.MAX_PACKET + 1
        self._drain = 1 if isinstance(session, Sender) else 64

    def attach(self, sock: socket.socket) -> None:
        """Start the transfer on its freshly bound, non-blocking socket."""
        self.sock = sock
        self._batch = BatchSender(sock)
        # a receiver takes a GSO-sent window in one recvmsg (UDP GRO) when it can
        self._gro = isinstance(self.session, Receiver) and enable_gro(sock)
        if self._gro:
            self.session.defer_writes = True  # type: ignore[union-attr]  # ACK a window, then write it
        if isinstance(self.session, Sender):
            reader = self._readable_sender
        else:
            reader = self._readable_gro if self._gro else self._readable
        self.loop.add_reader(sock.fileno(), reader)
        now = time.monotonic()
        self._send(self.session.start(now))
        self._after(now)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        session = self.session
        peer = self.peer
        for _ in range(self._drain):
            try:
                data, addr = sock.recvfrom(self._bufsize)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # e.g. a queued ICMP error: the retry budget decides
            if addr != peer:
                if not is_reflection_risk(addr[:2]):
                    self._sendto(P.encode_error(P.ERR_UNKNOWN_TID, "unknown transfer ID"), addr)
                continue
            self._handle(data, time.monotonic())
            if session.finished:
                break
        spin = self.service.spin
        if spin and not session.finished and len(self.service.transfers) == 1:
            self._spin(sock, spin)
        self._after(time.monotonic())

    def _readable_sender(self) -> None:
        """The RRQ hot path: one ACK in, the next DATA (or window) out, with as
        little Python as possible between the two syscalls."""
        sock = self.sock
        if sock is None:
            return
        try:
            data, addr = sock.recvfrom(1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # e.g. a queued ICMP error: the retry budget decides
        peer = self.peer
        if addr != peer:
            if not is_reflection_risk(addr[:2]):
                self._sendto(P.encode_error(P.ERR_UNKNOWN_TID, "unknown transfer ID"), addr)
            return
        now = time.monotonic()
        session = self.session
        out = session.receive(data, now)
        if out:
            if len(out) == 1:
                try:
                    sock.sendto(out[0], peer)
                except (BlockingIOError, InterruptedError):
                    self.dropped += 1
                except OSError:
                    pass
            else:
                self.dropped += self._batch.send(out, peer)
                session.prepare()  # type: ignore[union-attr]  # the next window, made while this one is answered
        if session.finished:
            self.close()
            return
        spin = self.service.spin
        if spin and len(self.service.transfers) == 1:
            self._spin(sock, spin)
            self._after(time.monotonic())
            return
        due = session.deadline
        if due is not None and (self._timer is None or due < self._timer_due - 0.0002):
            self._after(now)

    def _spin(self, sock: socket.socket, spin: float) -> None:
        """Lock-step with a single transfer: poll the socket for a short while
        instead of sleeping, which saves a wake-up per round trip."""
        clock = time.perf_counter
        session = self.session
        peer = self.peer
        bufsize = self._bufsize
        until = clock() + spin
        while clock() < until:
            try:
                data, addr = sock.recvfrom(bufsize)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            if addr != peer:
                return  # let the normal path answer strangers
            self._handle(data, time.monotonic())
            if session.finished:
                return
            until = clock() + spin

    def _readable_gro(self) -> None:
        """Like ``_readable`` for a receiver whose socket coalesces (UDP GRO)."""
        sock = self.sock
        if sock is None:
            return
        session = self.session
        for _ in range(self._drain):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(RECV_SIZE, CMSG_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            if addr != self.peer:
                if not is_reflection_risk(addr[:2]):
                    self._sendto(P.encode_error(P.ERR_UNKNOWN_TID, "unknown transfer ID"), addr)
                continue
            now = time.monotonic()
            if ancillary:
                self._handle(split_gro(data, ancillary, views=True), now)
            else:
                self._handle(data, now)
            if session.finished:
                break
        self._after(time.monotonic())

    def _handle(self, data: bytes | list[Any], now: float) -> None:
        """One datagram, or a list of them from one GRO read."""
        session = self.session
        if isinstance(data, list):  # only a Receiver enables GRO
            out = session.receive_burst(data, now)  # type: ignore[union-attr]
        else:
            out = session.receive(data, now)
        if self.upload is not None and not self.upload.done:
            if session.complete:
                out = self._commit(out)
            elif session.finished:
                self.upload.discard()  # before the ERROR goes out: nothing is left behind
        if out:
            if len(out) == 1:
                try:
                    self.sock.sendto(out[0], self.peer)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    self.dropped += 1
                except OSError:
                    pass
            else:
                self.dropped += self._batch.send(out, self.peer)
        if isinstance(data, list) and session.writes_deferred:  # type: ignore[union-attr]
            # the window's ACK is out: write it while the next one comes
            out = session.write_deferred()  # type: ignore[union-attr]
            if self.upload is not None and not self.upload.done and session.finished:
                self.upload.discard()  # before the ERROR goes out: nothing is left behind
            self._send(out)

    # -- internals -----------------------------------------------------------------------
    def _sendto(self, datagram: bytes, addr: Any) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendto(datagram, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError:
            pass

    def _send(self, out: list[bytes]) -> None:
        if self.sock is not None:
            self.dropped += self._batch.send(out, self.peer)

    def _commit(self, out: list[bytes]) -> list[bytes]:
        assert self.upload is not None
        try:
            self.upload.commit()
        except Refused as exc:
            return self.session.abort(exc.code, exc.message)
        return out

    def _after(self, now: float) -> None:
        session = self.session
        if session.finished:
            self.close()
            return
        due = session.deadline
        if due is None:
            return
        # lazy timer: re-arm only when the deadline moved earlier; a timer that
        # fires early re-arms itself (saves a TimerHandle per packet)
        if self._timer is None or due < self._timer_due - 0.0002:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_due = due
            self._timer = self.loop.call_later(max(0.0, due - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = time.monotonic()
        due = self.session.next_deadline()
        if due is not None and now >= due:
            self._send(self.session.on_timer(now))
        self._after(now)

    def close(self, reason: str | None = None) -> None:
        """Release everything; an unfinished upload is discarded."""
        if self.closed:
            return
        if reason is not None and not self.session.finished:
            self._send(self.session.abort(P.ERR_UNDEFINED, reason))
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.upload is not None and not self.upload.done:
            self.upload.discard()
        self.service._finished(self)


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_RCVTIMEO (at least 0.5 ms: 0 would mean "forever")."""
    seconds = max(0.0005, seconds)
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))


class _ThreadTransfer(_TransferState):
    """One transfer driven by a thread of its own, with blocking syscalls.

    Why: lock-step TFTP is round-trip bound and, with client and server on
    one CPU, every microsecond the server spends per block shows in the
    throughput.  Through the event loop a block costs an ``epoll_wait``, the
    loop's callback dispatch and a timer check on top of the ``recvfrom`` and
    ``sendto``; here it costs one ``recv`` and one ``send`` (measured with
    curl, both pinned to one CPU: 7.3 -> 5-5.5 us of server CPU per 512-byte
    block, the kernel's share and the context switch included), which is how
    in.tftpd serves too (a forked child per transfer).  Steady lock-step
    runs in ``_lockstep_run``, the tightest loop there is.

    - The transfer socket is *connected* to the client's TID: the kernel
      filters other sources and skips the route lookup and address parsing
      of ``sendto``.  A sibling socket bound to the same port with
      SO_REUSEPORT (the kernel prefers the connected socket for the peer's
      datagrams) receives everything else in the event loop and answers it
      with ERROR 5 (RFC 1350 section 4), so the unknown-TID rule still holds.
    - Timers: SO_RCVTIMEO on the blocking socket is the session's next
      deadline (re-set only when it moved a lot: a syscall), so a lock-step
      wait costs no ``poll``.  SO_RCVTIMEO counts in scheduler ticks, so the
      short timers of windowed transfers (tail-loss probes, stalled windows)
      wait in ``select()`` instead, after a short spin (``precise_waiter``).
    - Stop (daemon stop, reload, ``close``): a flag plus ``shutdown(SHUT_RD)``,
      which wakes a blocked ``recv`` at once; the thread then sends the ERROR,
      discards an unfinished upload, closes its socket and file, and hands
      the bookkeeping back to the event loop.  ``join`` waits for that.
    """

    def __init__(self, service: TftpService, peer: Any, session: Sender | Receiver, what: str,
                 fd: int | None = None, upload: _Upload | None = None) -> None:
        super().__init__(service, peer, session, what, fd, upload)
        self.stranger: socket.socket | None = None
        self._stop: str | None = None
        self._thread: threading.Thread | None = None
        #: counted in service.threaded (until _finished)
        self.counted = False
        # close() (event loop) must not shutdown() a descriptor the thread just closed
        self._sock_lock = threading.Lock()

    def attach(self, sock: socket.socket, stranger: socket.socket) -> None:
        """Start on ``sock`` (bound, connected, blocking) with ``stranger``
        (same port, unconnected, non-blocking) answering other TIDs."""
        self.sock = sock
        self.stranger = stranger
        self.loop.add_reader(stranger.fileno(), self._stranger_readable)
        self._thread = threading.Thread(target=self._run, name=f"tftp {self.peer[0]}:{self.peer[1]}", daemon=True)
        self._thread.start()

    def _stranger_readable(self) -> None:
        sock = self.stranger
        if sock is None:
            return
        for _ in range(16):
            try:
                _data, addr = sock.recvfrom(16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if addr[:2] != self.peer[:2] and not is_reflection_risk(addr[:2]):
                try:
                    sock.sendto(P.encode_error(P.ERR_UNKNOWN_TID, "unknown transfer ID"), addr)
                except OSError:
                    pass

    # -- the transfer's thread -------------------------------------------------------------
    def _run(self) -> None:
        sock = self.sock
        assert sock is not None
        session = self.session
        clock = time.monotonic
        recv = sock.recv
        recvmsg = sock.recvmsg
        send = sock.send
        setsockopt = sock.setsockopt
        batch = BatchSender(sock)
        # a receiver takes a GSO-sent window in one recvmsg (UDP GRO) when it can
        gro = isinstance(session, Receiver) and enable_gro(sock)
        if gro:
            session.defer_writes = True  # type: ignore[union-attr]  # ACK a window, then write it
        # a sender only ever reads ACKs and ERRORs (an ERROR's text is cut at ~470
        # characters, which decodes fine): a buffer this small comes from Python's
        # small-object allocator, ~0.2 us a block less than malloc + shrink
        bufsize = SENDER_RECV_SIZE if isinstance(session, Sender) else P.MAX_PACKET + 1
        upload = self.upload
        wait_readable = precise_waiter(sock, SPIN)
        # lock-step sender: ACKs go straight to Sender.lockstep_ack (the hot path)
        lockstep = session.lockstep_ack if isinstance(session, Sender) else None
        prepare = session.prepare if isinstance(session, Sender) else None
        try:
            now = clock()
            self._send(session.start(now), batch)
            current = 1.0  # the SO_RCVTIMEO in force
            setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(current))
            pending: bytes | None = None  # a datagram the lock-step run handed back
            while not session.finished and self._stop is None:
                # the hot path is recv -> session -> send; the timer costs one
                # comparison per datagram: SO_RCVTIMEO must never reach past the
                # deadline (a wake-up before it only loops once more)
                due = session.deadline
                data: bytes | None = None
                if pending is not None:
                    data, pending, ancillary = pending, None, None
                elif due is not None:
                    wait = due - now
                    if wait <= 0:
                        now = clock()
                        if now >= due:
                            self._send(session.on_timer(now), batch)
                            continue
                        wait = due - now
                    if wait < PRECISE_BELOW and session.windowsize > 1:
                        # windowed: tail-loss probes and gap recovery live on ms
                        # timers, and SO_RCVTIMEO counts in scheduler ticks (asked
                        # for 1 ms, it wakes after 6-12 ms here); select() is precise
                        # to ~50 us (poll and epoll count whole ms),
                        # and one more syscall per window is cheap
                        if not wait_readable(wait):
                            now = clock()
                            continue
                    # (a timer up to 20 % late is fine; a syscall per block is not)
                    elif wait < current * 0.8 or wait > current * 4:
                        current = max(0.0005, wait)
                        setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(current))
                if data is None:
                    try:
                        if gro:
                            data, ancillary, _flags, _addr = recvmsg(RECV_SIZE, CMSG_SIZE)
                        else:
                            data = recv(bufsize)
                            ancillary = None
                    except (BlockingIOError, InterruptedError, TimeoutError):
                        now = clock()  # SO_RCVTIMEO expired: the loop checks the deadline
                        if due is not None and now < due:
                            current = 0.0  # woke early (timeout rounding): re-arm for the rest
                        continue
                    except ConnectionRefusedError:
                        now = clock()
                        continue  # a queued ICMP error from the peer: the retry budget decides
                now = clock()
                if self._stop is not None:
                    break  # woken by shutdown()
                if lockstep is not None:
                    datagram = lockstep(data, now)
                    if datagram is not None:
                        pending, now = self._lockstep_run(datagram, recv, send, lockstep, bufsize, current)
                        continue
                if ancillary:
                    # only a Receiver enables GRO
                    out = session.receive_burst(split_gro(data, ancillary, views=True), now)  # type: ignore[union-attr]
                else:
                    out = session.receive(data, now)
                if upload is not None and not upload.done:
                    out = self._upload_step(out)
                if out:
                    if len(out) == 1:
                        try:
                            send(out[0])
                        except (BlockingIOError, InterruptedError, TimeoutError):
                            self.dropped += 1  # the send buffer stayed full: like a loss on the wire
                        except OSError:
                            pass  # e.g. ECONNREFUSED from the peer's ICMP: the retry budget decides
                    else:
                        self.dropped += batch.send_connected(out)
                        if prepare is not None:
                            prepare()  # the next window, made while this one is answered
                if ancillary and session.writes_deferred:  # type: ignore[union-attr]
                    # the window's ACK is out: write it while the next one comes
                    out = session.write_deferred()  # type: ignore[union-attr]
                    if upload is not None and not upload.done:
                        out = self._upload_step(out)
                    self._send(out, batch)
            if self._stop is not None and not session.finished:
                self._send(session.abort(P.ERR_UNDEFINED, self._stop), batch)
        except Exception as exc:  # noqa: BLE001  # a bug must not leave the client hanging or a file behind
            self.service.ctx.log.warning("tftp: %s with %s failed: %r", self.what, self.peer[0], exc)
            if not session.finished:
                self._send(session.abort(P.ERR_UNDEFINED, "internal server error"), batch)
        finally:
            self._release()
            try:
                self.loop.call_soon_threadsafe(self._finish)
            except RuntimeError:
                pass  # the loop is gone (daemon exiting): nothing left to account

    def _lockstep_run(self, datagram: bytes, recv: Callable[[int], bytes], send: Callable[[bytes], int],
                      lockstep: Callable[[bytes, float], bytes | None], bufsize: int,
                      timeout: float) -> tuple[bytes | None, float]:
        """Steady lock-step, the tightest loop there is: ACK in, next DATA out.

        Sends ``datagram`` (the answer to the ACK that started the run), then
        runs while every datagram is the ACK of the one outstanding block;
        returns (the datagram it did not handle, or None, and the time) for
        ``_run`` to deal with, and returns at once on a timeout, a stop, or
        an RTO that fell below the SO_RCVTIMEO in force (``timeout``), so
        the timer and the rest are ``_run``'s job.  Blocks go in runs
        (``Sender.steady_run``): per block, one comparison with the ACK
        expected and one send, the session told once a run (lock-step
        throughput is per-block CPU).  A stop needs no check per block:
        ``close`` shuts the socket down for reading, so the next ``recv``
        returns an empty datagram, which goes back to ``_run``.
        """
        clock = time.monotonic
        session = self.session
        steady_run, steady_acked = session.steady_run, session.steady_acked  # type: ignore[union-attr]
        stopped = self._stop is not None
        rto_floor = timeout * 0.8
        self._send_one(datagram)
        while True:
            if stopped or session.finished or session.rto < rto_floor:
                return None, clock()
            acks, datas = steady_run()
            if not acks:  # one block at a time (netascii, a retry, a read error)
                try:
                    data = recv(bufsize)
                except (BlockingIOError, InterruptedError, TimeoutError, ConnectionRefusedError):
                    return None, clock()
                now = clock()
                answer = lockstep(data, now)
                if answer is None:
                    return data, now
                self._send_one(answer)
                continue
            count = 0
            started = clock()
            for ack, datagram in zip(acks, datas):
                try:
                    data = recv(bufsize)
                except (BlockingIOError, InterruptedError, TimeoutError, ConnectionRefusedError):
                    # SO_RCVTIMEO ran out ``timeout`` after the last send: the
                    # session's timer counts from then
                    now = clock()
                    steady_acked(count, max(started, now - timeout), started)
                    return None, now
                if data != ack:
                    now = clock()
                    steady_acked(count, now, started)
                    return data, now
                try:
                    send(datagram)
                except (BlockingIOError, InterruptedError, TimeoutError):
                    self.dropped += 1  # the send buffer stayed full: like a loss on the wire
                except OSError:
                    pass  # e.g. ECONNREFUSED from the peer's ICMP: the retry budget decides
                count += 1
            steady_acked(count, clock(), started)

    def _upload_step(self, out: list[bytes]) -> list[bytes]:
        """Commit a complete upload before its final ACK leaves; discard a failed
        one before its ERROR leaves (nothing is left behind)."""
        session = self.session
        upload = self.upload
        assert upload is not None
        if session.complete:
            try:
                upload.commit()
            except Refused as exc:
                return session.abort(exc.code, exc.message)
        elif session.finished:
            upload.discard()
        return out

    def _send_one(self, datagram: bytes) -> None:
        try:
            self.sock.send(datagram)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError, TimeoutError):
            self.dropped += 1  # the send buffer stayed full: like a loss on the wire
        except OSError:
            pass  # e.g. ECONNREFUSED from the peer's ICMP: the retry budget decides

    def _send(self, out: list[bytes], batch: BatchSender) -> None:
        if len(out) == 1:
            self._send_one(out[0])
        elif out:
            self.dropped += batch.send_connected(out)

    def _release(self) -> None:
        """In the thread, at its end: socket, file and unfinished upload."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.upload is not None and not self.upload.done:
            self.upload.discard()
        with self._sock_lock:
            if self.sock is not None:
                self.sock.close()
                self.sock = None

    # -- the event loop's side ---------------------------------------------------------------
    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.stranger is not None:
            self.loop.remove_reader(self.stranger.fileno())
            self.stranger.close()
            self.stranger = None
        self.service._finished(self)

    def close(self, reason: str | None = None) -> None:
        """Ask the thread to stop (it sends ERROR ``reason`` when unfinished)."""
        if self._stop is None:
            self._stop = reason or "transfer closed"
        with self._sock_lock:
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RD)  # wakes a blocked recv at once
                except OSError:
                    pass

    def join(self, timeout: float) -> None:
        """Wait for the thread (cleanup done), then do the bookkeeping now."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._finish()


class _Listener(asyncio.DatagramProtocol):
    """The well-known port: requests in, errors out, transfers started."""

    def __init__(self, service: TftpService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.service._request(data, addr, self)
        except Exception as exc:  # noqa: BLE001  # one bad request never stops the service
            self.service.ctx.log.warning("tftp: request from %s failed: %r", addr, exc)
            # and the client gets a clear error instead of retrying into a timeout
            self.reply_error(addr, P.ERR_UNDEFINED, "internal error handling the request")

    def error_received(self, exc: Exception) -> None:
        pass

    def reply_error(self, addr: Any, code: int, message: str) -> None:
        if self.transport is not None:
            self.transport.sendto(P.encode_error(code, message), addr)


def _reuseport_works(family: int, host: str) -> bool:
    """Can two UDP sockets share a port with SO_REUSEPORT here (Linux >= 3.9)?
    The thread driver needs it for its unknown-TID sibling socket."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return False
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as a, socket.socket(family, socket.SOCK_DGRAM) as b:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            a.bind((host, 0))
            b.bind(a.getsockname())
    except OSError:
        return False
    return True


def _check_limit(name: str, low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"{name} must be {low}..{high}"
    return check


class TftpService(Service):
    name = "tftp"
    summary = "TFTP server: RFC 1350 + options (blksize, tsize, timeout, windowsize), confined root"
    transports = frozenset({"udp"})
    udp_models = frozenset({"datagram"})
    udp_default_model = "datagram"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "root": Option(str, "", help="directory served (empty: $XDG_DATA_HOME/inetkit/tftp, created on start)"),
        "allow_create": Option(bool, False, help="accept uploads (WRQ) of new files"),
        "allow_overwrite": Option(bool, False, help="let an upload replace an existing file"),
        "max_size": Option(int, 1 << 30, help="largest upload in bytes (0: no limit)", check=non_negative),
        "max_blksize": Option(int, MAX_BLKSIZE, help="largest blksize granted (8..65464)", check=_check_limit("max_blksize", 8, MAX_BLKSIZE)),
        "max_windowsize": Option(int, 64, help="largest windowsize granted (1..65535)", check=_check_limit("max_windowsize", 1, 65535)),
        "max_per_source": Option(int, 32, help="concurrent transfers per client address", check=positive),
        "timeout": Option(float, 1.0, help="initial retransmission timeout in seconds (a client's timeout option overrides it)", check=positive),
        "threads": Option(int, 16, help="transfers that run each in a thread of their own (blocking syscalls on a "
                          "connected socket: the least CPU per packet); more at once run in the event loop; "
                          "0: all in the event loop", check=_check_limit("threads", 0, 1024)),
        "spin_us": Option(int, 0, help="microseconds a lone lock-step transfer polls for the next packet before "
                          "sleeping (saves a wake-up per round trip, costs CPU; 0: off)", check=_check_limit("spin_us", 0, 1000)),
    }

    def __init__(self, options: Any = None, where: str = "options") -> None:
        super().__init__(options, where)
        o = self.options
        self.limits = Limits(max_blksize=o.max_blksize, max_windowsize=o.max_windowsize,
                             default_timeout=o.timeout, max_size=o.max_size or None)
        self.root = ""
        self.transfers: dict[Any, _Transfer | _ThreadTransfer] = {}
        self.per_source: dict[str, int] = {}
        self.ctx: ServiceContext = None  # type: ignore[assignment]
        self.completed = 0
        self.failed = 0
        #: seconds a lone lock-step transfer polls for the next ACK before sleeping
        self.spin = o.spin_us / 1e6
        #: transfers running in threads right now (at most options.threads)
        self.threaded = 0
        self._threads_ok = False

    def prepare_root(self) -> str:
        """Resolve (and for the default, create) the root; returns its real path."""
        root = Path(self.options.root).expanduser() if self.options.root else default_root()
        if not self.options.root:
            root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            from inetkit.errors import ConfigError
            raise ConfigError(f"TFTP root {str(root)!r} is not a directory", "options: root")
        self.root = os.path.realpath(root)
        return self.root

    async def serve_udp(self, sock: socket.socket, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.prepare_root()
        ctx.log.info("tftp: serving %s (create=%s, overwrite=%s)", self.root, self.options.allow_create, self.options.allow_overwrite)
        loop = asyncio.get_running_loop()
        self._local = sock.getsockname()
        self._family = sock.family
        self._threads_ok = self.options.threads > 0 and _reuseport_works(self._family, self._local[0])
        transport, self._listener = await loop.create_datagram_endpoint(lambda: _Listener(self), sock=sock)
        try:
            await asyncio.Future()  # until cancelled
        finally:
            self._close_all("server shutting down")
            transport.close()

    async def aclose(self) -> None:
        self._close_all("server shutting down")

    def _close_all(self, reason: str, timeout: float = 2.0) -> None:
        """End every transfer (ERROR ``reason`` to each client, unfinished uploads
        discarded); threads are joined, bounded, so that is done on return."""
        transfers = list(self.transfers.values())
        for transfer in transfers:
            transfer.close(reason)
        deadline = time.monotonic() + timeout
        for transfer in transfers:
            if isinstance(transfer, _ThreadTransfer):
                transfer.join(max(0.0, deadline - time.monotonic()))

    # -- requests ---------------------------------------------------------------------------
    def _request(self, data: bytes, addr: Any, listener: _Listener) -> None:
        if is_reflection_risk(addr[:2]):
            return
        admit = self.ctx.admit_request
        if admit is not None and not admit(ConnectionContext(self.ctx, plain_address(addr), ("", 0))):
            return  # the daemon's allow/deny or per-source rate refused it (and counted it)
        try:
            packet = P.decode(data)
        except RemoteProtocolError as exc:
            listener.reply_error(addr, exc.code or P.ERR_ILLEGAL, str(exc))
            return
        if isinstance(packet, P.Error):
            return  # never answer an error
        if not isinstance(packet, P.Request):
            listener.reply_error(addr, P.ERR_ILLEGAL, f"expected RRQ or WRQ on this port, got {P.OPCODE_NAMES[data[1]]}")
            return
        if addr in self.transfers:
            return  # the client retransmitted its request: its transfer is answering
        host = addr[0]
        if self.per_source.get(host, 0) >= self.options.max_per_source:
            listener.reply_error(addr, P.ERR_UNDEFINED, f"too many concurrent transfers from {host} (limit {self.options.max_per_source})")
            return
        try:
            self._start(packet, addr)
        except Refused as exc:
            self.ctx.log.info("tftp: %s %r from %s refused: %s", P.OPCODE_NAMES[packet.opcode], packet.filename, host, exc.message)
            listener.reply_error(addr, exc.code, exc.message)
        except TsizeTooLarge as exc:
            listener.reply_error(addr, P.ERR_DISK_FULL, str(exc))

    def _start(self, request: P.Request, addr: Any) -> None:
        if request.mode == "mail":
            raise Refused(P.ERR_ILLEGAL, "mail mode is not supported")
        path = resolve_path(self.root, request.filename)
        ascii_mode = request.mode == "netascii"
        now = time.monotonic()
        fd: int | None = None
        upload: _Upload | None = None
        if request.opcode == P.RRQ:
            fd, size = self._open_read(path)
            try:
                wire_size: int | None = size
                if ascii_mode:
                    wire_size = netascii_size(fd, NETASCII_TSIZE_SCAN_LIMIT) if "tsize" in request.options else None
                oack, settings = negotiate(request.options, self.limits, is_read=True, file_size=wire_size)
                source = NetasciiSource(fd, settings.blksize) if ascii_mode else OctetSource(fd, settings.blksize)
                session: Sender | Receiver = Sender(source, settings, now, first=P.encode_oack(oack) if oack else None)
                transfer = self._driver()(self, addr, session, f"RRQ {request.filename!r}", fd=fd)
            except BaseException:
                os.close(fd)
                raise
        else:
            oack, settings = negotiate(request.options, self.limits, is_read=False)
            upload = self._open_write(path, ascii_mode)
            dally = min(10.0, 2 * settings.timeout)
            session = Receiver(upload.write, settings, now, first=P.encode_oack(oack) if oack else None, dally=dally)
            transfer = self._driver()(self, addr, session, f"WRQ {request.filename!r}", upload=upload)
        self.transfers[addr] = transfer
        self.per_source[addr[0]] = self.per_source.get(addr[0], 0) + 1
        self._open_socket(transfer)

    def _driver(self) -> type[_Transfer] | type[_ThreadTransfer]:
        """A thread of its own while fewer than ``threads`` run, else the event loop."""
        if self._threads_ok and self.threaded < self.options.threads:
            return _ThreadTransfer
        return _Transfer

    def _open_socket(self, transfer: _Transfer | _ThreadTransfer) -> None:
        if isinstance(transfer, _ThreadTransfer):
            self._open_thread_sockets(transfer)
            return
        sock = transfer_socket(self._family)
        try:
            sock.bind((self._local[0], 0))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            transfer.close()
            self.ctx.log.warning("tftp: cannot open a transfer socket: %s", exc)
            return
        transfer.attach(sock)

    def _open_thread_sockets(self, transfer: _ThreadTransfer) -> None:
        """The connected transfer socket and its unconnected sibling on the same
        port (SO_REUSEPORT), which receives other TIDs' datagrams."""
        sock = transfer_socket(self._family)
        stranger: socket.socket | None = None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._local[0], 0))
            stranger = socket.socket(self._family, socket.SOCK_DGRAM)
            stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            stranger.bind(sock.getsockname())
            stranger.setblocking(False)
            sock.connect(transfer.peer)
            # a full send buffer blocks a send at most this long (then: like a loss)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(0.2))
        except OSError as exc:
            sock.close()
            if stranger is not None:
                stranger.close()
            transfer.sock = None
            transfer._finish()
            self.ctx.log.warning("tftp: cannot open a transfer socket: %s", exc)
            return
        self.threaded += 1
        transfer.counted = True
        transfer.attach(sock, stranger)

    def _open_read(self, path: str) -> tuple[int, int]:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise Refused(P.ERR_NOT_FOUND, "file not found") from None
        except OSError as exc:
            raise Refused(P.ERR_ACCESS, f"cannot read file: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise Refused(P.ERR_ACCESS, f"refused: {kind}")
        try:
            # O_NONBLOCK: a FIFO swapped in after the stat cannot hang us; fstat re-checks
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Refused(P.ERR_NOT_FOUND, "file not found") from None
        except OSError as exc:
            raise Refused(P.ERR_ACCESS, f"cannot read file: {exc.strerror}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise Refused(P.ERR_ACCESS, "refused: not a regular file")
        return fd, info.st_size

    def _open_write(self, path: str, ascii_mode: bool) -> _Upload:
        if not self.options.allow_create:
            raise Refused(P.ERR_ACCESS, "uploads are disabled on this server (allow_create is off)")
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise Refused(P.ERR_NOT_FOUND, "no such directory on the server")
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            info = None
        except OSError as exc:  # ENAMETOOLONG, ELOOP, EACCES...: a refusal, not a silent drop
            raise Refused(P.ERR_ACCESS, f"cannot write file: {exc.strerror}") from None
        if info is not None:
            if not stat.S_ISREG(info.st_mode):
                raise Refused(P.ERR_ACCESS, "refused: the target is not a regular file")
            if not self.options.allow_overwrite:
                raise Refused(P.ERR_EXISTS, "file already exists (allow_overwrite is off)")
        try:
            return _Upload(path, ascii_mode, self.limits.max_size, self.options.allow_overwrite)
        except OSError as exc:
            code = P.ERR_DISK_FULL if exc.errno in (errno.ENOSPC, errno.EDQUOT) else P.ERR_ACCESS
            raise Refused(code, f"cannot create file: {exc.strerror}") from None

    # -- bookkeeping -------------------------------------------------------------------------
    def _finished(self, transfer: _Transfer | _ThreadTransfer) -> None:
        if isinstance(transfer, _ThreadTransfer) and transfer.counted:
            transfer.counted = False
            self.threaded -= 1
        if self.transfers.get(transfer.peer) is transfer:
            del self.transfers[transfer.peer]
            host = transfer.peer[0]
            left = self.per_source.get(host, 1) - 1
            if left > 0:
                self.per_source[host] = left
            else:
                self.per_source.pop(host, None)
        session = transfer.session
        elapsed = max(1e-6, time.monotonic() - transfer.started)
        peer = f"{transfer.peer[0]}:{transfer.peer[1]}"
        stats = self.ctx.stats if self.ctx is not None else {}
        if session.complete:
            self.completed += 1
            stats["tftp_ok"] = stats.get("tftp_ok", 0) + 1
            if self.ctx is not None:
                self.ctx.log.info("tftp: %s with %s: %d bytes in %.3f s (%.1f MiB/s, %d retransmissions)",
                                  transfer.what, peer, session.bytes, elapsed, session.bytes / elapsed / 1048576,
                                  session.retransmissions)
        else:
            self.failed += 1
            stats["tftp_failed"] = stats.get("tftp_failed", 0) + 1
            if self.ctx is not None:
                why = session.failure.describe() if session.failure else "closed"
                self.ctx.log.info("tftp: %s with %s failed after %d bytes: %s", transfer.what, peer, session.bytes, why)
