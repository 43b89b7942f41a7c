"""Blocking TFTP client (RFC 1350 + 2347/2348/2349/7440) over the shared sessions.

``get_file`` and ``put_file`` are what the CLI uses; ``download`` and
``upload`` are the building blocks (any writer / any descriptor).

- The request goes to the server's well-known port; the first reply's source
  becomes the transfer's TID (RFC 1350 section 4).  Datagrams from any other
  source get ERROR 5 and are otherwise ignored.
- Options are only sent when they differ from RFC 1350 defaults (plus tsize).
  A server that ignores them simply answers with DATA 1 / ACK 0 and the
  transfer runs at 512-byte lock-step; a server that refuses them with
  ERROR 8 gets the request again without options.
- ``get_file`` writes to a temporary file beside LOCAL and renames it only
  when the transfer completed, so a failed download never leaves a LOCAL
  that looks complete.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
from inetkit.proto.tftp.options import DEFAULT_TIMEOUT, Settings, request_options
from inetkit.proto.tftp.session import Receiver, Sender
from inetkit.proto.tftp.sources import NetasciiSource, OctetSource, netascii_size

#: from this blksize on, get_file writes each block straight to the file
DIRECT_WRITE_BLKSIZE = 32768
#: a windowed transfer waits with select() (us precision) below this, SO_RCVTIMEO above
PRECISE_BELOW = 0.05

Progress = Callable[[int, "int | None"], None]


class TftpError(Exception):
    """A transfer failed.  ``code`` is the TFTP error code; ``remote`` tells
    whether the server sent it (ERROR packet) or we gave up ourselves."""

    def __init__(self, message: str, code: int | None = None, remote: bool = False) -> None:
        self.code = code
        self.remote = remote
        super().__init__(message)


@dataclass
class TransferResult:
    bytes: int
    elapsed: float
    blksize: int
    windowsize: int
    #: True when the server answered our options with an OACK
    negotiated: bool
    retransmissions: int

    @property
    def rate(self) -> float:
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0


def _resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise TftpError(f"cannot resolve {host!r}")
    family, _, _, _, addr = infos[0]
    return family, addr


def _timeval(seconds: float) -> bytes:
    seconds = max(0.0005, seconds)
    return struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))


def _drive(sock: socket.socket, session: Sender | Receiver, server: tuple[Any, ...], progress: Progress | None) -> None:
    """Run ``session`` to its end over ``sock``; raises TftpError on failure.

    The socket is blocking with SO_RCVTIMEO as its timeout: one recvfrom
    syscall per datagram, where ``settimeout`` would add a poll() to each.
    """
    peer = None
    server_host = server[0]
    clock = time.monotonic
    recvfrom = sock.recvfrom
    recvmsg = sock.recvmsg
    raw_sendto = sock.sendto
    setsockopt = sock.setsockopt
    batch = BatchSender(sock)
    # a receiver takes a GSO-sent window in one recvmsg (UDP GRO) when it can
    gro = isinstance(session, Receiver) and enable_gro(sock)
    if gro:
        session.defer_writes = True  # type: ignore[union-attr]  # ACK a window, then write it
    wait_readable = precise_waiter(sock, SPIN)
    prepare = session.prepare if isinstance(session, Sender) else None

    def sendto(datagram: bytes, addr: tuple[Any, ...]) -> None:
        try:
            raw_sendto(datagram, addr)
        except (BlockingIOError, InterruptedError, TimeoutError):
            pass  # the send buffer stayed full: like a lost datagram, retransmission covers it

    now = clock()
    for datagram in session.start(now):
        sendto(datagram, server)
    last_report = 0.0
    current = 1.0
    setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(current))
    while not session.finished:
        due = session.deadline
        now = clock()
        if due is not None and now >= due:
            for datagram in session.on_timer(now):
                sendto(datagram, peer or server)
            continue
        wait = due - now if due is not None else 1.0
        if wait < PRECISE_BELOW and session.windowsize > 1:
            # windowed: loss recovery lives on ms timers, and SO_RCVTIMEO counts in
            # scheduler ticks (asked for 1 ms it wakes after 6-12 ms here); select()
            # is precise to ~50 us (poll and epoll count whole ms), and one more syscall per window is cheap
            if not wait_readable(wait):
                continue
        # changing the timeout costs a syscall: only when it is far off
        elif wait < current * 0.5 or wait > current * 2:
            current = max(0.0005, wait)
            setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(current))
        try:
            if gro:
                data, ancillary, _flags, addr = recvmsg(RECV_SIZE, CMSG_SIZE)
            else:
                ancillary = None
                data, addr = recvfrom(session.blksize + 5 if session.blksize >= 1019 else 1024)
        except (BlockingIOError, InterruptedError, TimeoutError):
            continue  # SO_RCVTIMEO expired: the loop checks the deadline
        except ConnectionRefusedError:
            continue  # a late ICMP error: the retry budget decides
        if peer is None:
            if addr[0] != server_host:
                continue
            peer = addr
        elif addr != peer:
            sendto(P.encode_error(P.ERR_UNKNOWN_TID, "unknown transfer ID"), addr)
            continue
        now = clock()
        if ancillary:
            out = session.receive_burst(split_gro(data, ancillary, views=True), now)  # type: ignore[union-attr]
            if len(out) == 1:
                sendto(out[0], peer)
            elif out:
                batch.send(out, peer)
            if session.writes_deferred:  # type: ignore[union-attr]
                # the window's ACK is out: write it while the next one comes
                for datagram in session.write_deferred():  # type: ignore[union-attr]
                    sendto(datagram, peer)
        else:
            out = session.receive(data, now)
            if len(out) == 1:
                sendto(out[0], peer)
            elif out:
                batch.send(out, peer)
                if prepare is not None:
                    prepare()  # the next window, made while this one is answered
        if progress is not None and now - last_report >= 0.1:
            last_report = now
            progress(session.bytes, session.expected_size)
    if session.failure is not None:
        failure = session.failure
        if failure.remote:
            raise TftpError(explain_error(failure.code, failure.message), failure.code, remote=True)
        raise TftpError(failure.message, failure.code)
    if progress is not None:
        progress(session.bytes, session.expected_size)


def explain_error(code: int, message: str) -> str:
    """A server ERROR in words a user can act on."""
    hints = {
        P.ERR_NOT_FOUND: "the file does not exist on the server",
        P.ERR_ACCESS: "the server refused access (permissions, path outside its root, or uploads disabled)",
        P.ERR_DISK_FULL: "the server is out of space or the file exceeds its size limit",
        P.ERR_ILLEGAL: "the server considers the request or a packet invalid",
        P.ERR_UNKNOWN_TID: "the server does not know this transfer (it may have timed out)",
        P.ERR_EXISTS: "the file already exists on the server and it does not allow overwriting",
        P.ERR_NO_USER: "no such user on the server",
        P.ERR_OPTIONS: "the server refused the requested options",
    }
    text = P.describe_error(code, message)
    hint = hints.get(code)
    return f"server error: {text}" + (f" — {hint}" if hint and hint not in text else "")


def _socket(family: int, timeout: float) -> socket.socket:
    """A blocking UDP socket whose receive and send timeouts are set with
    SO_RCVTIMEO / SO_SNDTIMEO (see ``_drive``)."""
    sock = transfer_socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(max(1.0, timeout)))
    return sock


def _transfer(
    host: str, port: int, make: Callable[[bytes, dict[str, str], Settings], Sender | Receiver],
    opcode: int, remote: str, mode: str, options: dict[str, str], timeout: float, progress: Progress | None,
) -> TransferResult:
    family, server = _resolve(host, port)
    settings = Settings(timeout=timeout)
    started = time.monotonic()
    attempts = [options, {}] if options else [options]
    for attempt, opts in enumerate(attempts):
        request = P.encode_request(opcode, remote, mode, opts)
        session = make(request, opts, settings)
        with _socket(family, timeout) as sock:
            try:
                _drive(sock, session, server, progress)
            except TftpError as exc:
                # RFC 2347: a server may refuse options with ERROR 8; ask again without them
                if exc.code == P.ERR_OPTIONS and exc.remote and attempt + 1 < len(attempts) and session.bytes == 0:
                    continue
                raise
        return TransferResult(session.bytes, time.monotonic() - started, session.blksize, session.windowsize,
                              session.negotiated, session.retransmissions)
    raise TftpError("unreachable")  # pragma: no cover


def download(
    host: str, port: int, remote: str, write: Callable[[bytes], object], *, mode: str = "octet",
    blksize: int | None = None, windowsize: int | None = None, timeout: float = DEFAULT_TIMEOUT,
    tsize: bool = True, progress: Progress | None = None, give_up: float | None = None,
) -> TransferResult:
    """RRQ ``remote``; every payload (decoded when netascii) goes to ``write``.
    ``give_up``: seconds without progress before failing (default 5, or 5 timeouts)."""
    options = request_options(blksize=blksize, windowsize=windowsize,
                              timeout=_option_timeout(timeout), tsize=0 if tsize else None)

    def make(request: bytes, opts: dict[str, str], settings: Settings) -> Receiver:
        sink = write
        if mode == "netascii":
            decoder = netascii.Decoder()
            holder["decoder"] = decoder

            def sink(payload: bytes) -> None:
                write(decoder.feed(payload))
        return Receiver(sink, settings, time.monotonic(), request=request, requested=opts, give_up=give_up)

    holder: dict[str, netascii.Decoder] = {}
    result = _transfer(host, port, make, P.RRQ, remote, mode, options, timeout, progress)
    if "decoder" in holder:
        tail = holder["decoder"].flush()
        if tail:
            write(tail)
    return result


def upload(
    host: str, port: int, fd: int, remote: str, *, mode: str = "octet",
    blksize: int | None = None, windowsize: int | None = None, timeout: float = DEFAULT_TIMEOUT,
    tsize: bool = True, progress: Progress | None = None, give_up: float | None = None,
) -> TransferResult:
    """WRQ ``remote`` with the contents of the open descriptor ``fd`` (``give_up`` as in download)."""
    size: int | None = None
    if tsize:
        size = netascii_size(fd) if mode == "netascii" else os.fstat(fd).st_size
    options = request_options(blksize=blksize, windowsize=windowsize, timeout=_option_timeout(timeout), tsize=size)

    def make(request: bytes, opts: dict[str, str], settings: Settings) -> Sender:
        kind = NetasciiSource if mode == "netascii" else OctetSource

        class _Lazy:
            """The block size is only known after the server's reply: the real
            source is made on the first block, then called directly."""

            def __init__(self) -> None:
                self.src: OctetSource | NetasciiSource | None = None

            def block(self, index: int) -> bytes:
                if self.src is None or self.src.blksize != session.blksize:
                    self.src = kind(fd, session.blksize)
                    session.replace_source(self.src)  # from now on without this wrapper
                return self.src.block(index)

            def release(self, below: int) -> None:
                if self.src is not None:
                    self.src.release(below)

        session = Sender(_Lazy(), settings, time.monotonic(), request=request, requested=opts, give_up=give_up)
        if size is not None:
            session.expected_size = size
        return session

    return _transfer(host, port, make, P.WRQ, remote, mode, options, timeout, progress)


def _option_timeout(timeout: float) -> int | None:
    """Only send the timeout option when it differs from the usual 1 s default."""
    if timeout == DEFAULT_TIMEOUT:
        return None
    return max(1, min(255, round(timeout)))


def get_file(host: str, port: int, remote: str, local: str, **kwargs: object) -> TransferResult:
    """Download into ``local`` through a temporary file renamed on success."""
    directory = os.path.dirname(os.path.abspath(local))
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(local)}.", suffix=".part", dir=directory)
    blksize = kwargs.get("blksize")
    # big blocks go to the file as they come (a 1 MiB buffer would only add a
    # copy per 64 KiB block); small ones are gathered into 1 MiB writes
    buffering = 0 if isinstance(blksize, int) and blksize >= DIRECT_WRITE_BLKSIZE else 1 << 20
    try:
        with os.fdopen(fd, "wb", buffering=buffering) as out:
            write = out.write if buffering else _write_all(out)
            result = download(host, port, remote, write, **kwargs)  # type: ignore[arg-type]
        os.chmod(temp, 0o644 & ~_umask())
        os.replace(temp, local)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    return result


def _write_all(out: Any) -> Callable[[bytes], None]:
    """``write`` for an unbuffered file: a raw write may take less than it was
    given, and a short write must never go unnoticed (a truncated download)."""
    raw_write = out.write

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = raw_write(view)
            if not written:
                raise OSError("short write")
            view = view[written:]
    return write


def put_file(host: str, port: int, local: str, remote: str, **kwargs: object) -> TransferResult:
    fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return upload(host, port, fd, remote, **kwargs)  # type: ignore[arg-type]
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
