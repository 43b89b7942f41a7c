"""Blocking client of the ``files`` service (protocol FX1, docs/filexfer.md).

``list_files``, ``download`` and ``upload`` drive ``ClientTransfer`` (the
sans-IO core) over one TCP connection each.  Bodies never pass through Python
objects per chunk: a download into a regular file goes socket -> pipe -> file
by ``splice(2)`` while a second thread hashes the bytes already written from
the page cache (``FileHasher``); into a pipe or terminal it goes by
``recv_into`` a few reusable 1 MiB buffers and ``os.write``, hashed on a second
thread (the hashes release the GIL); uploads go by ``socket.sendfile``.

Every failure raises ``TransferError`` with a message fit for a user; the
server's own ``ERR`` lines arrive as ``TransferError`` whose ``status`` is the
server's code.  A download is written to ``OUT.part`` and renamed to ``OUT``
only after its digest matched; ``resume=True`` continues an existing
``OUT.part`` (the digest still covers the whole file).

Which digest a download verifies is ``check``: ``"sha256"`` (the default:
the protocol's end-to-end digest, always available, carried by every FILE
line), ``"blake3"`` (the server announces it on request; it costs the client
about a quarter of what SHA-256 does, so verification no longer bounds the
transfer) or ``"auto"`` (BLAKE3 when the package is installed and the server
offers it, else SHA-256).  See docs/filexfer.md, "Integrity".
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from inetkit.errors import LocalProtocolError
from inetkit.io.filehash import FileHasher, blake3_available, new_hash
from inetkit.proto.filexfer import (
    MAX_LINE,
    ClientTransfer,
    Entry,
    FileHeader,
    FilexferError,
    GetRequest,
    LineBuffer,
    ListRequest,
    PutRequest,
    Ready,
    State,
    Waiting,
)

BUFFER = 1 << 20
#: upload body per sendfile call; the server's reply is checked in between
SEND_CHUNK = 4 << 20
#: buffers in flight between the receiving and the hashing thread
RING = 4
DEFAULT_TIMEOUT = 30.0

Progress = Callable[[int, int], None]  # (bytes done so far, total bytes)


class TransferError(Exception):
    """A transfer failed; ``str()`` is the user-facing message.

    ``status`` is the server's FX1 code when it refused, else None; ``kind``
    is one of ``refused`` (server ERR), ``unreachable``, ``timeout``,
    ``protocol``, ``integrity``, ``local``.
    """

    def __init__(self, message: str, kind: str, status: int | None = None) -> None:
        self.kind = kind
        self.status = status
        super().__init__(message)


@dataclass
class Result:
    name: str
    size: int
    #: the file's SHA-256 (a download: as the server announced it; an upload: verified by the server)
    digest: str
    #: where the transfer (re)started; bytes moved this time = size - offset
    offset: int
    seconds: float
    #: the digest the client verified over the whole file ("sha256" or "blake3") and its value
    check: str = "sha256"
    checked: str = ""


def resolve_check(check: str) -> str:
    """``auto`` -> ``blake3`` when the package is installed, else ``sha256``."""
    if check == "auto":
        return "blake3" if blake3_available() else "sha256"
    if check not in ("sha256", "blake3"):
        raise TransferError(f"unknown digest {check!r} (auto, sha256 or blake3)", "local")
    if check == "blake3" and not blake3_available():
        raise TransferError("--check blake3 needs the 'blake3' package (pip install blake3)", "local")
    return check


# -- plumbing ----------------------------------------------------------------------


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise TransferError(f"timed out connecting to {host} port {port}", "timeout") from None
    except OSError as exc:
        raise TransferError(f"cannot connect to {host} port {port}: {exc.strerror or exc}", "unreachable") from None


def _wrap(exc: BaseException, what: str) -> TransferError:
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, FilexferError):
        if exc.remote:
            return TransferError(f"server refused {what}: {exc.status} {exc.reason}", "refused", exc.status)
        return TransferError(f"protocol error during {what}: {exc.reason}", "protocol", exc.status)
    if isinstance(exc, LocalProtocolError):
        return TransferError(f"{what}: {exc}", "local")
    if isinstance(exc, TimeoutError):
        return TransferError(f"{what}: the server stopped responding (timeout)", "timeout")
    if isinstance(exc, ConnectionError):
        return TransferError(f"{what}: connection lost ({exc.strerror or type(exc).__name__})", "protocol")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return TransferError(f"{what}: {exc.strerror or exc}{where}", "local")
    raise exc


class _Conn:
    """One connection's header reading: lines through a bounded LineBuffer,
    with the bytes after the last line kept for the body."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines = LineBuffer(MAX_LINE)
        self.scratch = bytearray(MAX_LINE)

    def read_line(self) -> bytes:
        while True:
            line = self.lines.feed()
            if line is not None:
                return line
            n = self.sock.recv_into(self.scratch)
            if n == 0:
                raise ConnectionResetError(0, "the server closed the connection")
            line = self.lines.feed(memoryview(self.scratch)[:n])
            if line is not None:
                return line


# -- LIST --------------------------------------------------------------------------


def list_files(host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> list[Entry]:
    core = ClientTransfer(ListRequest())
    with _connect(host, port, timeout) as sock:
        try:
            sock.sendall(core.start())
            conn = _Conn(sock)
            core.handle_line(conn.read_line())
            entries: list[Entry] = []
            while core.state is State.ENTRIES:
                entry = core.handle_line(conn.read_line())
                assert isinstance(entry, Entry)
                entries.append(entry)
            return entries
        except Exception as exc:
            raise _wrap(exc, "list") from None


# -- GET ---------------------------------------------------------------------------


class _Hasher:
    """Hash buffers in order on a helper thread while the caller keeps
    receiving into the others: a ring of ``RING`` reusable buffers."""

    def __init__(self, digest: Any) -> None:
        import queue  # only this path needs it: `inetkit get` imports lazily to start fast

        self.digest = digest
        self.buffers = [bytearray(BUFFER) for _ in range(RING)]
        self.free: queue.Queue[int] = queue.Queue()
        for i in range(RING):
            self.free.put(i)
        self.work: queue.Queue[tuple[int, int] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="inetkit-sha256", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.work.get()
            if item is None:
                return
            index, length = item
            self.digest.update(memoryview(self.buffers[index])[:length])
            self.free.put(index)

    def take(self) -> tuple[int, memoryview]:
        index = self.free.get()
        return index, memoryview(self.buffers[index])

    def submit(self, index: int, length: int) -> None:
        self.work.put((index, length))

    def finish(self) -> str:
        self.work.put(None)
        self.thread.join()
        return self.digest.hexdigest()


def download(
    host: str,
    port: int,
    name: str,
    output: str,
    *,
    resume: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
    check: str = "sha256",
) -> Result:
    """Fetch ``name`` into ``output`` (``-``: standard output), verified.

    The body goes to ``output + ".part"``, renamed to ``output`` once the
    digest ``check`` (``sha256``, ``blake3``, or ``auto``: BLAKE3 when available, else SHA-256) over the
    whole file matches the server's; on a mismatch the part file is deleted.
    With ``resume`` an existing part file is continued.  ``auto`` falls back
    to SHA-256 when the server refuses to announce a BLAKE3 (an older FX1
    server answers ``ERR 400``).
    """
    started = time.monotonic()
    algorithm = resolve_check(check)
    to_stdout = output == "-"
    part = None if to_stdout else output + ".part"
    offset = 0
    if part is not None and resume:
        try:
            offset = os.stat(part).st_size
        except FileNotFoundError:
            offset = 0
    if to_stdout:
        out_fd = sys.stdout.buffer.fileno()
        sys.stdout.flush()
    else:
        assert part is not None
        try:
            out_fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (0 if resume else os.O_TRUNC), 0o644)
        except OSError as exc:
            raise _wrap(exc, "download") from None
    try:
        try:
            with _connect(host, port, timeout) as sock:
                header, checked = _download_on(sock, name, out_fd, offset, progress, to_stdout, algorithm)
        except FilexferError as exc:
            # nothing was written yet: the refusal came instead of the FILE line
            if not (check == "auto" and algorithm == "blake3" and exc.remote and exc.status == 400):
                raise
            algorithm = "sha256"
            with _connect(host, port, timeout) as sock:
                header, checked = _download_on(sock, name, out_fd, offset, progress, to_stdout, algorithm)
        if part is not None:
            os.close(out_fd)
            out_fd = -1
            os.replace(part, output)
        return Result(name, header.size, header.digest, offset, time.monotonic() - started, algorithm, checked)
    except Exception as exc:
        error = _wrap(exc, "download")
        if part is not None:
            kept = os.fstat(out_fd).st_size if out_fd >= 0 else 0
            if error.kind == "integrity" or kept == 0:
                # never keep bytes that failed verification, nor an empty part file
                try:
                    os.unlink(part)
                except FileNotFoundError:
                    pass
            elif error.kind in ("timeout", "protocol"):
                error = TransferError(f"{error}; {kept} bytes kept in {part} (get again with --resume)", error.kind, error.status)
        raise error from None
    finally:
        if part is not None and out_fd >= 0:
            os.close(out_fd)


def _download_on(sock: socket.socket, name: str, out_fd: int, offset: int, progress: Progress | None,
                 to_stdout: bool, check: str) -> tuple[FileHeader, str]:
    """One GET exchange; returns the FILE header and the verified digest."""
    core = ClientTransfer(GetRequest(name, offset, check))
    sock.sendall(core.start())
    conn = _Conn(sock)
    try:
        header = core.handle_line(conn.read_line())
        while isinstance(header, Waiting):  # the server is still hashing the file
            header = core.handle_line(conn.read_line())
    except FilexferError as exc:
        if exc.remote and exc.status == 416 and offset:
            raise TransferError(f"cannot resume: the local part file ({offset} bytes) is longer than "
                                f"the server's file; delete it and retry", "refused", 416) from None
        raise
    assert isinstance(header, FileHeader)
    expected = header.blake3 if check == "blake3" else header.digest
    assert expected is not None  # the core insists on the digest it asked for
    early = conn.lines.take_rest()[: core.body_remaining]
    if to_stdout or not stat.S_ISREG(os.fstat(out_fd).st_mode):
        got = _receive_copying(sock, core, out_fd, new_hash(check), early, offset, header.size, progress)
    else:
        # resuming: the digest covers the bytes already held too; the file
        # hasher reads them while the rest arrives
        if offset:
            os.lseek(out_fd, offset, os.SEEK_SET)
        else:
            os.ftruncate(out_fd, 0)
        got = _receive_spliced(sock, core, out_fd, early, offset, header.size, progress, new_hash(check))
    if got != expected:
        label = "BLAKE3" if check == "blake3" else "SHA-256"
        raise TransferError(f"{label} mismatch: server announced {expected}, received data hashes to {got}; "
                            "nothing kept", "integrity")
    if progress is not None:
        progress(header.size, header.size)
    return header, got


def _receive_copying(sock: socket.socket, core: ClientTransfer, out_fd: int, digest: Any, early: bytes,
                     done: int, total: int, progress: Progress | None) -> str:
    """recv_into a ring of buffers, write each, hash it on the helper thread
    (for outputs that are not regular files: pipes, terminals)."""
    hasher = _Hasher(digest)
    try:
        if early:
            _write_all(out_fd, memoryview(early))
            index, view = hasher.take()
            view[: len(early)] = early
            hasher.submit(index, len(early))
            core.body_received(len(early))
            done += len(early)
        while core.state is State.BODY:
            index, view = hasher.take()
            filled = 0
            want = min(len(view), core.body_remaining)
            while filled < want:
                n = sock.recv_into(view[filled:want])
                if n == 0:
                    break
                filled += n
            if filled:
                _write_all(out_fd, view[:filled])
                hasher.submit(index, filled)
                core.body_received(filled)
                done += filled
                if progress is not None:
                    progress(done, total)
            else:
                hasher.free.put(index)
            if filled < want:
                core.body_eof()  # raises: short body
    finally:
        got = hasher.finish()
    return got


def _receive_spliced(sock: socket.socket, core: ClientTransfer, out_fd: int, early: bytes,
                     done: int, total: int, progress: Progress | None, digest: Any) -> str:
    """socket -> pipe -> file with splice(2): the body never enters Python;
    the kernel copies it once, into the page cache, and ``FileHasher``
    hashes it from there into ``digest``."""
    hasher = FileHasher(out_fd, 0, digest)
    hasher.advance(done)
    pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            capacity = fcntl.fcntl(pipe_w, fcntl.F_SETPIPE_SZ, BUFFER)
        except OSError:
            capacity = 65536  # the kernel's pipe-max-size is lower: the default pipe
        if early:
            _write_all(out_fd, memoryview(early))
            core.body_received(len(early))
            done += len(early)
            hasher.advance(done)
        fd = sock.fileno()
        splice_out = True
        timeout = sock.gettimeout()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while core.state is State.BODY:
            try:
                n = os.splice(fd, pipe_w, min(capacity, core.body_remaining), flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                if not poller.poll(None if timeout is None else int(timeout * 1000)):
                    raise TimeoutError("no data") from None
                continue
            if n == 0:
                core.body_eof()  # raises: short body
            moved = 0
            while moved < n:
                if splice_out:
                    try:
                        moved += os.splice(pipe_r, out_fd, n - moved, flags=os.SPLICE_F_MOVE)
                        continue
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                            raise
                        splice_out = False  # this file system cannot splice: copy through Python
                chunk = os.read(pipe_r, n - moved)
                _write_all(out_fd, memoryview(chunk))
                moved += len(chunk)
            core.body_received(n)
            done += n
            hasher.advance(done)
            if progress is not None:
                progress(done, total)
    finally:
        os.close(pipe_r)
        os.close(pipe_w)
        got = hasher.finish()
    return got


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


# -- PUT ---------------------------------------------------------------------------


def sha256_file(file: BinaryIO, progress: Progress | None = None) -> str:
    """SHA-256 of a whole open file, read into one reused buffer."""
    import hashlib  # uploads only: a download verifies with new_hash()
    size = os.fstat(file.fileno()).st_size
    digest = hashlib.sha256()
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    done = 0
    file.seek(0)
    while n := file.readinto(view):  # type: ignore[attr-defined]
        digest.update(view[:n])
        done += n
        if progress is not None:
            progress(done, max(size, done))
    return digest.hexdigest()


def upload(
    host: str,
    port: int,
    source: str,
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
    locked_wait: float = 2.0,
    hash_progress: Progress | None = None,
) -> Result:
    """Send ``source`` (``-``: standard input) as ``name``, verified by the server.

    FX1 announces size and SHA-256 before the bytes, so standard input is
    first spooled to a temporary file.  When the server already holds part of
    this exact upload (same name, size and digest) it answers READY with an
    offset and only the rest is sent.
    """
    import hashlib
    import tempfile

    started = time.monotonic()
    try:
        if source == "-":
            file: BinaryIO = tempfile.TemporaryFile(prefix="inetkit-send-")
            digest = hashlib.sha256()
            stdin = sys.stdin.buffer
            while chunk := stdin.read(BUFFER):
                digest.update(chunk)
                file.write(chunk)
            file.flush()
            hexdigest = digest.hexdigest()
        else:
            file = open(source, "rb")
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                file.close()
                raise TransferError(f"{source} is not a regular file", "local")
            hexdigest = sha256_file(file, hash_progress)
    except OSError as exc:
        raise _wrap(exc, "upload") from None
    with file:
        size = os.fstat(file.fileno()).st_size
        try:
            request = PutRequest(name, size, hexdigest)
            request.encode()
        except Exception as exc:
            raise TransferError(f"cannot upload as {name!r}: {exc}", "local") from None
        deadline = started + locked_wait
        while True:
            try:
                offset = _upload_once(host, port, file, request, timeout, progress)
                return Result(name, size, hexdigest, offset, time.monotonic() - started)
            except TransferError as exc:
                # 423: the server still holds the partial of this very upload (it
                # has not yet noticed that the previous attempt died): retry briefly
                if exc.status != 423 or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)


def _upload_once(host: str, port: int, file: BinaryIO, request: PutRequest, timeout: float,
                 progress: Progress | None) -> int:
    """One attempt; returns the offset the server resumed from."""
    core = ClientTransfer(request)
    size = request.size
    try:
        with _connect(host, port, timeout) as sock:
            sock.sendall(core.start())
            conn = _Conn(sock)
            ready = core.handle_line(conn.read_line())
            assert isinstance(ready, Ready)
            if progress is not None:
                progress(ready.offset, size)
            pos = ready.offset
            while core.state is State.BODY:
                # a server that refuses mid-body (disk full) says so in an ERR
                # line: look for it between chunks instead of sending into a wall
                if select.select([sock], [], [], 0)[0]:
                    core.handle_line(conn.read_line())
                count = min(core.body_remaining, SEND_CHUNK)
                sent = sock.sendfile(file, pos, count)
                if sent == 0:
                    raise TransferError("the local file shrank during the upload", "local")
                core.body_sent(sent)
                pos += sent
                if progress is not None:
                    progress(pos, size)
            while isinstance(core.handle_line(conn.read_line()), Waiting):
                pass  # the server is still verifying the upload
            return ready.offset
    except Exception as exc:
        raise _wrap(exc, "upload") from None
