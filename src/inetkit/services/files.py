"""``files``: inetkit's verified, resumable file transfer (protocol FX1, docs/filexfer.md).

Policy on top of the sans-IO core ``inetkit.proto.filexfer``:

- **Root confinement**: every name resolves (symlinks included) inside
  ``root``; ``..``, absolute names and symlinks that lead out are refused (403).
- **Downloads** go by ``os.sendfile`` from the page cache (zero-copy); the
  ``FILE`` header carries the size and SHA-256 first, and the BLAKE3 too when
  the client asks for it (digests are cached per file identity, so only the
  first download of a file pays for hashing).
- **Uploads** are off unless ``allow_upload``; overwriting is off unless
  ``allow_overwrite``; ``max_size`` caps a file; the free space (statvfs) must
  hold the rest of the file plus ``min_free`` before ``READY`` is sent.  Bytes
  go by ``recv_into`` one reusable buffer straight into a *partial* file under
  ``ROOT/.inetkit-partial/`` (never listed, never served), keyed by name, size
  and digest so that the same upload resumes where it stopped.  Only when the
  whole file is there and its SHA-256 matches is it renamed (atomically) to
  its name; a mismatch deletes it, a disconnect leaves the resumable partial.

All models run the same handler coroutine (``inetkit.io.zerocopy``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import threading
from typing import Any, ClassVar

from inetkit.errors import ConfigError
from inetkit.io.filehash import FileHasher, blake3_available, hash_fd
from inetkit.proto.filexfer import (
    MAX_LINE,
    RESERVED,
    Entry,
    FilexferError,
    GetRequest,
    LineBuffer,
    ListRequest,
    PutRequest,
    ServerTransfer,
    State,
    Status,
    name_problem,
)
from inetkit.services.base import ConnectionContext
from inetkit.services.channel import ChannelService
from inetkit.services.options import Option, non_negative, positive

#: how many file digests the cache remembers
DIGEST_CACHE = 1024


def default_root() -> str:
    """``$XDG_DATA_HOME/inetkit/files``, else ``~/.local/share/inetkit/files``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "inetkit", "files")


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


#: after an ERR, read and drop at most this much of what the client still sends, for at most this long
LINGER_BYTES = 16 << 20
LINGER_SECONDS = 2.0


class FilesService(ChannelService):
    name = "files"
    summary = "verified, resumable file transfer (LIST/GET/PUT, sendfile, SHA-256)"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "root": Option(str, "", help="directory served (created on start); empty: $XDG_DATA_HOME/inetkit/files"),
        "allow_upload": Option(bool, False, help="accept PUT"),
        "allow_overwrite": Option(bool, False, help="let an upload replace an existing file"),
        "max_size": Option(int, 64 << 30, help="largest file an upload may announce (bytes)", check=non_negative),
        "min_free": Option(int, 16 << 20, help="free space (bytes) an upload must leave on the file system", check=non_negative),
        "max_entries": Option(int, 10_000, help="most entries one LIST returns", check=positive),
        "buffer_size": Option(int, 1 << 20, help="upload receive buffer (bytes)", check=positive),
        "fsync": Option(bool, False, help="fsync an upload before renaming it into place"),
    }

    #: seconds between WAIT lines while a digest is being computed
    wait_interval: float = 1.0

    def __init__(self, options: Any = None, where: str = "options") -> None:
        super().__init__(options, where)
        root = self.options.root or default_root()
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"option 'root': cannot create {root}: {exc.strerror}", where) from None
        if not os.path.isdir(root):
            raise ConfigError(f"option 'root': {root} is not a directory", where)
        self.root = os.path.realpath(root)
        self.partial_dir = os.path.join(self.root, RESERVED)
        #: SHA-256 and BLAKE3 digests by file identity (see ``cached_digest``)
        self._digests: dict[tuple[int, ...], str] = {}
        self._blake3: dict[tuple[int, ...], str] = {}
        self._digest_lock = threading.Lock()
        #: whether the blake3 package imports; asked at the first BLAKE3 GET, not at start
        #: (a daemon that never serves one need not load it)
        self._has_blake3: bool | None = None

    # -- one connection (run by every model: see services/channel.py) ---------------------------------------------------------
    async def serve(self, ch: Any, ctx: ConnectionContext) -> None:
        core = ServerTransfer()
        lines = LineBuffer(MAX_LINE)
        small = bytearray(MAX_LINE)
        try:
            line = None
            while line is None:
                n = await ch.recv_into(small)
                if n == 0:
                    return  # closed before asking anything
                ctx.bytes_in += n
                line = lines.feed(memoryview(small)[:n])
            request = core.handle_line(line)
        except FilexferError as exc:
            ctx.log.info("%s: bad request from %s: %s", ctx.service.name, ctx.peer_text, exc)
            await self._refuse(ch, core.error(exc.status, exc.reason))
            return
        try:
            if isinstance(request, ListRequest):
                await self._list(ch, core, ctx)
            elif isinstance(request, GetRequest):
                await self._get(ch, core, request, ctx)
            else:
                await self._put(ch, core, request, lines.take_rest(), ctx)
        except FilexferError as exc:
            ctx.log.info("%s: %s refused for %s: %s", ctx.service.name, type(request).__name__, ctx.peer_text, exc)
            await self._refuse(ch, core.error(exc.status, exc.reason))
        except (ConnectionError, TimeoutError):
            raise
        except OSError as exc:
            # a local failure (rename, open, ...) still ends in a clear ERR line for the client
            ctx.log.warning("%s: %s for %s failed: %s", ctx.service.name, type(request).__name__, ctx.peer_text, exc)
            if core.state is not State.DONE:
                await self._refuse(ch, core.error(Status.INTERNAL, f"server error: {exc.strerror or exc}"))

    async def _refuse(self, ch: Any, line: bytes) -> None:
        """Send an ERR line so that it arrives: closing a socket with unread
        input (a request body the client already sent) makes the kernel send
        RST, and the peer may lose the line.  So: FIN after the line, then
        read and drop the client's bytes (bounded) until it closes too."""
        await ch.sendall(line)
        try:
            ch.shutdown_write()
            await ch.drain(LINGER_BYTES, LINGER_SECONDS)
        except (ConnectionError, TimeoutError, OSError):
            pass  # the client is gone or slow: close anyway

    # -- paths ------------------------------------------------------------------
    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def resolve(self, name: str) -> str:
        """The real path of ``name`` under the root, or FilexferError (403)."""
        problem = name_problem(name)
        if problem:
            raise FilexferError(Status.FORBIDDEN, problem)
        real = os.path.realpath(os.path.join(self.root, name))
        if not self._inside(real) or real == self.root:
            raise FilexferError(Status.FORBIDDEN, "name leads outside the root")
        if real == self.partial_dir or real.startswith(self.partial_dir + os.sep):
            raise FilexferError(Status.FORBIDDEN, f"{RESERVED!r} is reserved")
        return real

    # -- LIST ---------------------------------------------------------------------
    def list_entries(self) -> list[Entry]:
        """Regular files under the root (symlinks followed only while they stay
        inside), sorted by name, at most ``max_entries``."""
        entries: list[Entry] = []
        limit = self.options.max_entries
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            dirnames[:] = sorted(d for d in dirnames if not (rel_dir == "." and d == RESERVED))
            for filename in sorted(filenames):
                rel = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                if name_problem(rel):
                    continue
                path = os.path.join(dirpath, filename)
                real = os.path.realpath(path)
                if not self._inside(real):
                    continue
                try:
                    st = os.stat(real)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    entries.append(Entry(st.st_size, rel))
                    if len(entries) >= limit:
                        return sorted(entries, key=lambda e: e.name)
        return sorted(entries, key=lambda e: e.name)

    async def _list(self, ch: Any, core: ServerTransfer, ctx: ConnectionContext) -> None:
        entries = await ch.offload(self.list_entries)
        out = bytearray(core.listing(len(entries)))
        for entry in entries:
            out += core.entry(entry)
            if len(out) >= 65536:
                await ch.sendall(out)
                ctx.bytes_out += len(out)
                out.clear()
        await ch.sendall(out)
        ctx.bytes_out += len(out)

    # -- GET ---------------------------------------------------------------------
    def _cache(self, check: str) -> dict[tuple[int, ...], str]:
        return self._blake3 if check == "blake3" else self._digests

    def cached_digest(self, st: os.stat_result, check: str = "sha256") -> str | None:
        """The remembered digest (``check``: sha256 or blake3) of the file with
        this identity: (device, inode, size, mtime, ctime)."""
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._digest_lock:
            return self._cache(check).get(key)

    def digest_of(self, fd: int, st: os.stat_result, progress: list[int] | None = None) -> str:
        """SHA-256 of an open file, cached by (device, inode, size, mtime, ctime)."""
        return self.digests_of(fd, st, ("sha256",), progress)[0]

    def digests_of(self, fd: int, st: os.stat_result, checks: tuple[str, ...],
                   progress: list[int] | None = None) -> list[str]:
        """The digests ``checks`` of an open file, from the cache where it has
        them; the missing ones are computed in one pass over the file."""
        found = {check: self.cached_digest(st, check) for check in checks}
        missing = [check for check, digest in found.items() if digest is None]
        if missing:
            for check, digest in zip(missing, hash_fd(fd, missing, st.st_size, progress)):
                self._remember(st, digest, check)
                found[check] = digest
        return [found[check] for check in checks]  # type: ignore[misc]

    def _remember(self, st: os.stat_result, digest: str, check: str = "sha256") -> None:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._digest_lock:
            cache = self._cache(check)
            if len(cache) >= DIGEST_CACHE:
                cache.pop(next(iter(cache)))
            cache[key] = digest

    def _open_for_read(self, name: str) -> tuple[int, os.stat_result]:
        real = self.resolve(name)
        try:
            # O_NONBLOCK: opening a FIFO would otherwise block the event loop (every
            # service of the daemon) until a writer appears; fstat below refuses it
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise FilexferError(Status.NOT_FOUND, "no such file") from None
        except PermissionError:
            raise FilexferError(Status.FORBIDDEN, "permission denied") from None
        except OSError as exc:
            raise FilexferError(Status.NOT_FOUND, f"cannot open: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise FilexferError(Status.NOT_FOUND, "not a regular file")
        return fd, st

    async def _get(self, ch: Any, core: ServerTransfer, req: GetRequest, ctx: ConnectionContext) -> None:
        fd, st = self._open_for_read(req.name)
        try:
            if req.offset > st.st_size:
                raise FilexferError(Status.BAD_OFFSET, f"offset {req.offset} beyond the file's {st.st_size} bytes")
            checks: tuple[str, ...] = ("sha256",)
            if req.check == "blake3":
                if self._has_blake3 is None:
                    self._has_blake3 = blake3_available()
                if not self._has_blake3:
                    raise FilexferError(Status.BAD_REQUEST, "this server cannot compute BLAKE3 (ask without it)")
                checks = ("sha256", "blake3")
            digests = [self.cached_digest(st, check) for check in checks]
            if None in digests:
                progress = [0]

                async def still_hashing() -> None:
                    line = core.wait(progress[0], st.st_size)
                    await ch.sendall(line)
                    ctx.bytes_out += len(line)

                digests = await ch.offload_ticking(lambda: self.digests_of(fd, st, checks, progress),
                                                   self.wait_interval, still_hashing)
            header = core.file(st.st_size, *digests)  # type: ignore[arg-type]
            await ch.sendall(header)
            due = st.st_size - req.offset
            sent = await ch.sendfile(fd, req.offset, due)
            ctx.bytes_out += len(header) + sent
            if sent < due:
                # the file shrank under us: the client sees a short body and fails
                ctx.log.warning("%s: %s shrank while being sent to %s", ctx.service.name, req.name, ctx.peer_text)
                return
            core.body_sent(sent)
        finally:
            os.close(fd)

    # -- PUT ---------------------------------------------------------------------
    def partial_path(self, req: PutRequest) -> str:
        key = hashlib.sha256(f"{req.name}\0{req.size}\0{req.digest}".encode("utf-8", "surrogatepass")).hexdigest()
        return os.path.join(self.partial_dir, key[:40] + ".part")

    def _check_target(self, req: PutRequest) -> str:
        if not self.options.allow_upload:
            raise FilexferError(Status.FORBIDDEN, "uploads are disabled on this server")
        final = self.resolve(req.name)
        parent = os.path.dirname(final)
        if not os.path.isdir(parent):
            raise FilexferError(Status.NOT_FOUND, "no such directory on the server")
        try:
            exists = os.lstat(final) is not None
        except FileNotFoundError:
            exists = False
        except OSError as exc:  # ENAMETOOLONG, ELOOP...: refuse now, not after READY and the whole body
            raise FilexferError(Status.BAD_REQUEST, f"unusable name: {exc.strerror}") from None
        if exists:
            if not self.options.allow_overwrite:
                raise FilexferError(Status.CONFLICT, "file exists and overwrite is disabled")
            if not os.path.isfile(final):
                raise FilexferError(Status.CONFLICT, "name exists and is not a regular file")
        if req.size > self.options.max_size:
            raise FilexferError(Status.TOO_LARGE, f"file larger than this server's limit of {self.options.max_size} bytes")
        return final

    def _check_space(self, need: int) -> None:
        vfs = os.statvfs(self.partial_dir)
        free = vfs.f_bavail * vfs.f_frsize
        if free - need < self.options.min_free:
            raise FilexferError(Status.INSUFFICIENT_STORAGE, f"insufficient storage: {need} bytes needed, {free} free")

    async def _put(self, ch: Any, core: ServerTransfer, req: PutRequest, early: bytes, ctx: ConnectionContext) -> None:
        final = self._check_target(req)
        os.makedirs(self.partial_dir, mode=0o700, exist_ok=True)
        ppath = self.partial_path(req)
        pfd = os.open(ppath, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        keep = True
        hasher: FileHasher | None = None
        try:
            try:
                fcntl.flock(pfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FilexferError(Status.LOCKED, "the same upload is already in progress") from None
            have = os.fstat(pfd).st_size
            if have > req.size:
                os.ftruncate(pfd, 0)
                have = 0
            try:
                self._check_space(req.size - have)
            except FilexferError:
                keep = have > 0
                raise
            await ch.sendall(core.ready(have))
            os.lseek(pfd, have, os.SEEK_SET)
            # hash on a helper thread as the bytes land (the prefix of a resumed
            # upload first), so that verification mostly overlaps the transfer
            # small windows: each upload adds at most 4 MiB of mapped page cache to RSS
            hasher = FileHasher(pfd, 0, window=4 << 20)
            hasher.advance(have)
            received = await self._receive_body(ch, core, pfd, early, ctx, hasher, have)
            if core.body_remaining:
                ctx.log.info("%s: upload of %s from %s interrupted at %d of %d bytes; partial kept for resume",
                             ctx.service.name, req.name, ctx.peer_text, have + received, req.size)
                return
            if self.options.fsync:
                os.fsync(pfd)
            finishing = hasher

            async def still_hashing() -> None:
                line = core.wait(finishing.hashed, req.size)
                await ch.sendall(line)
                ctx.bytes_out += len(line)

            digest = await ch.offload_ticking(finishing.finish, self.wait_interval, still_hashing)
            hasher = None
            if digest != req.digest:
                keep = False
                raise FilexferError(Status.DIGEST_MISMATCH, f"SHA-256 mismatch: got {digest}, file discarded")
            os.fchmod(pfd, 0o644)
            self._publish(ppath, final)
            # the digest was just verified: the first download need not hash again
            self._remember(os.fstat(pfd), digest)
            keep = True  # the partial's name is gone; nothing to delete
            reply = core.done(digest)
            await ch.sendall(reply)
            ctx.log.info("%s: stored %s (%d bytes) from %s", ctx.service.name, req.name, req.size, ctx.peer_text)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                keep = False
                raise FilexferError(Status.INSUFFICIENT_STORAGE, f"insufficient storage: {exc.strerror}") from None
            raise
        finally:
            if hasher is not None:
                hasher.cancel()
            if not keep:
                try:
                    os.unlink(ppath)
                except FileNotFoundError:
                    pass
            os.close(pfd)

    async def _receive_body(self, ch: Any, core: ServerTransfer, pfd: int, early: bytes, ctx: ConnectionContext,
                            hasher: FileHasher, pos: int) -> int:
        """recv_into one reusable buffer, write straight to the partial file,
        tell the hasher.  Returns the bytes stored; stops early (body_remaining
        > 0) on EOF."""
        received = 0
        try:
            if early and core.body_remaining:
                head = memoryview(early)[: core.body_remaining]
                _write_all(pfd, head)
                core.body_received(len(head))
                received += len(head)
                hasher.advance(pos + received)
            buf = bytearray(min(self.options.buffer_size, max(core.body_remaining, 1)))
            view = memoryview(buf)
            while core.body_remaining:
                n = await ch.recv_into(view, min(len(view), core.body_remaining))
                if n == 0:
                    break
                _write_all(pfd, view[:n])
                core.body_received(n)
                received += n
                hasher.advance(pos + received)
        finally:
            # the early bytes were counted with the request line
            ctx.bytes_in += received - min(len(early), received)
        return received

    def _publish(self, ppath: str, final: str) -> None:
        """Give the verified partial its name, atomically: rename(2) replaces
        (overwrite allowed) or link(2) + unlink, which refuses an existing name."""
        if self.options.allow_overwrite:
            os.replace(ppath, final)
            return
        try:
            os.link(ppath, final)
        except FileExistsError:
            raise FilexferError(Status.CONFLICT, "file exists and overwrite is disabled") from None
        os.unlink(ppath)
