"""SHA-256 (FIPS 180-4) or BLAKE3 of a file while it is being written, off the I/O thread.

``FileHasher`` follows a writer: the writer reports how far the file is
written (``advance``) and a helper thread hashes the new bytes from the page
cache through ``mmap`` windows, so the bytes are never copied into Python and
hashing overlaps the transfer (hashlib releases the GIL).  ``finish`` waits
for the rest and returns the hex digest; ``cancel`` stops early.

Used by the ``files`` service for uploads and by its client for downloads.

``new_hash(name)`` makes the hash objects: ``"sha256"`` (hashlib, OpenSSL)
or ``"blake3"`` (the ``blake3`` package: a 256-bit cryptographic hash that
runs about 4x faster than SHA-256 on one core here, which is why a download
verifies it by default; see docs/filexfer.md).  Both release the GIL while
hashing large buffers, so a hashing thread runs beside the I/O thread.
"""

from __future__ import annotations

import mmap
import os
import threading
from typing import Any

#: hash in windows this large (a multiple of mmap.ALLOCATIONGRANULARITY)
WINDOW = 16 << 20
#: read size of ``sha256_fd``
CHUNK = 1 << 20
#: MAP_POPULATE maps a window's pages in one go instead of one fault per 64 KiB
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


class FileHasher:
    def __init__(self, fd: int, start: int = 0, digest: Any = None, *, window: int = WINDOW) -> None:
        """Hash ``fd`` from offset ``start`` on into ``digest`` (any hash object
        with ``update``/``hexdigest``, default a new SHA-256), which may
        already cover [0, start)."""
        self.digest = digest if digest is not None else new_hash("sha256")
        self.fd = fd
        self.window = window
        self.hashed = start
        self.written = start
        self.final = False
        self.cancelled = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="inetkit-sha256", daemon=True)
        self.thread.start()

    def advance(self, written: int) -> None:
        """The file now holds bytes up to offset ``written``."""
        with self.cond:
            self.written = written
            if written - self.hashed >= self.window:
                self.cond.notify()

    def finish(self) -> str:
        """Hash what is left and return the hex digest (blocks: call it off an event loop)."""
        with self.cond:
            self.final = True
            self.cond.notify()
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.digest.hexdigest()

    def cancel(self) -> None:
        """Stop without hashing the rest."""
        with self.cond:
            self.cancelled = self.final = True
            self.cond.notify()
        self.thread.join()

    def _run(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.final and self.written - self.hashed < self.window:
                        self.cond.wait()
                    if self.cancelled:
                        return
                    final = self.final
                    ready = self.written - self.hashed
                    end = self.written if final else self.hashed + ready // self.window * self.window
                while self.hashed < end and not self.cancelled:
                    length = min(self.window, end - self.hashed)
                    base = self.hashed - self.hashed % mmap.ALLOCATIONGRANULARITY
                    skip = self.hashed - base
                    with mmap.mmap(self.fd, skip + length, flags=_MAP_FLAGS, prot=mmap.PROT_READ, offset=base) as mapped:
                        with memoryview(mapped) as view:
                            self.digest.update(view[skip : skip + length])
                    self.hashed += length
                if final:
                    return
        except BaseException as exc:  # reported by finish()
            self.error = exc


def blake3_available() -> bool:
    """True when the ``blake3`` package imports (it is a dependency, but a
    stripped-down install may lack it: callers then fall back to SHA-256)."""
    try:
        import blake3  # noqa: F401
    except ImportError:
        return False
    return True


def new_hash(name: str) -> Any:
    """A fresh hash object (``update``/``hexdigest``) for ``"sha256"`` or ``"blake3"``.
    ImportError when ``blake3`` is asked for and not installed."""
    if name == "sha256":
        import hashlib  # here, not at the top: `inetkit get` verifying BLAKE3 need not load OpenSSL

        return hashlib.sha256()
    if name == "blake3":
        from blake3 import blake3

        return blake3()
    raise ValueError(f"unknown hash {name!r}")


def sha256_fd(fd: int, length: int | None = None, progress: list[int] | None = None) -> str:
    """SHA-256 of the first ``length`` bytes (default: all) of ``fd``, read with
    ``pread`` into one reused buffer (the file offset is left alone).
    ``progress[0]``, when given, follows the bytes hashed so far."""
    return hash_fd(fd, ["sha256"], length, progress)[0]


def hash_fd(fd: int, names: list[str], length: int | None = None, progress: list[int] | None = None) -> list[str]:
    """Hex digests of the first ``length`` bytes (default: all) of ``fd`` with
    each hash in ``names``, in one pass over the file (``pread`` into one reused
    buffer; the file offset is left alone).  ``progress`` as for ``sha256_fd``."""
    digests = [new_hash(name) for name in names]
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    while length is None or offset < length:
        want = CHUNK if length is None else min(CHUNK, length - offset)
        n = os.preadv(fd, [view[:want]], offset)
        if n == 0:
            break
        for digest in digests:
            digest.update(view[:n])
        offset += n
        if progress is not None:
            progress[0] = offset
    return [digest.hexdigest() for digest in digests]
