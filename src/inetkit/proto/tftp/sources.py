"""Block sources over an open file descriptor, for ``session.Sender``.

They only read the descriptor they are given (no sockets, no clock), so the
server and the client share them.  ``OctetSource`` reads with ``os.pread``:
random access, so a retransmission simply re-reads its block and nothing is
cached.  ``NetasciiSource`` encodes in order (the encoding shifts offsets)
and keeps blocks until the sender releases them.
"""

from __future__ import annotations

import os

from inetkit.proto.tftp import netascii

#: bytes an OctetSource reads ahead with one pread (small blocks: one syscall per 128 of them)
READ_AHEAD = 64 * 1024


class OctetSource:
    """Block ``i`` (1-based) is bytes ``(i-1)*blksize .. i*blksize`` of the file.

    Small blocks are cut from a read-ahead chunk (one ``pread`` of about
    ``READ_AHEAD`` bytes): lock-step TFTP at blksize 512 spends ~0.5 us of
    syscall per block otherwise.  Any other block (a retransmission) is read
    on its own, so nothing but that one chunk is ever cached.
    """

    __slots__ = ("blksize", "fd", "_chunk", "_first", "_count", "_per")

    def __init__(self, fd: int, blksize: int) -> None:
        self.fd = fd
        self.blksize = blksize
        self._chunk = b""
        self._first = 1  # block index of the chunk's first block
        self._count = 0  # whole or final blocks in the chunk
        self._per = max(1, READ_AHEAD // blksize)

    def block(self, index: int) -> bytes:
        blksize = self.blksize
        i = index - self._first
        if 0 <= i < self._count:
            start = i * blksize
            return self._chunk[start:start + blksize]
        if self._per < 4 or i != self._count:
            # big blocks (nothing to gain) or not the next block in order
            return os.pread(self.fd, blksize, (index - 1) * blksize)
        chunk = os.pread(self.fd, self._per * blksize, (index - 1) * blksize)
        self._chunk = chunk
        self._first = index
        # a short chunk ends the file: its last (possibly empty) block is block count-1
        self._count = len(chunk) // blksize + (1 if len(chunk) < self._per * blksize else 0)
        return chunk[:blksize]

    def blocks(self, first: int, limit: int) -> list[bytes]:
        """Blocks ``first`` .. (at most ``limit`` of them, at least one) as far
        as the read-ahead chunk goes, reading the next chunk when ``first``
        starts it (``Sender.steady_run``: lock-step blocks in bulk)."""
        i = first - self._first
        if not 0 <= i < self._count:
            block = self.block(first)
            i = first - self._first
            if not 0 <= i < self._count:
                return [block]  # read on its own (big blocks, or out of order)
        blksize = self.blksize
        chunk = self._chunk
        return [chunk[k * blksize:(k + 1) * blksize] for k in range(i, min(self._count, i + limit))]

    def release(self, below: int) -> None:
        pass


class NetasciiSource:
    """Blocks of the netascii encoding of the file (read from its start)."""

    def __init__(self, fd: int, blksize: int) -> None:
        self.fd = fd
        self.blksize = blksize
        self._blocks: dict[int, bytes] = {}
        self._made = 0
        self._offset = 0
        self._pending = b""
        self._eof = False

    def block(self, index: int) -> bytes:
        while index > self._made:
            while len(self._pending) < self.blksize and not self._eof:
                raw = os.pread(self.fd, max(65536, self.blksize), self._offset)
                if not raw:
                    self._eof = True
                else:
                    self._offset += len(raw)
                    self._pending += netascii.encode(raw)
            self._made += 1
            self._blocks[self._made] = self._pending[: self.blksize]
            self._pending = self._pending[self.blksize :]
        return self._blocks[index]

    def release(self, below: int) -> None:
        for i in [i for i in self._blocks if i < below]:
            del self._blocks[i]


def netascii_size(fd: int, limit: int | None = None) -> int | None:
    """Size of the netascii encoding of the whole file (for tsize); None when
    the file is larger than ``limit`` bytes (the scan would take too long)."""
    total = 0
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return total
        offset += len(chunk)
        if limit is not None and offset > limit:
            return None
        total += netascii.encoded_size(chunk)
