"""Netascii (RFC 1350 section 1, RFC 764): the on-the-wire text form.

On the wire a line ends with CR LF and a bare CR is sent as CR NUL.  The
local form used here is Unix text (LF line ends):

- encode: CR -> CR NUL, LF -> CR LF.  Encoding is byte-local, so any split
  of the input encodes to the same stream (blocks can be cut anywhere).
- decode: CR LF -> LF, CR NUL -> CR.  A CR that ends one block is held back
  until the next block shows what follows it, so a CR LF or CR NUL split
  across two DATA packets decodes correctly.  A CR followed by anything
  else is kept as is (lenient: some peers send bare CRs).
"""

from __future__ import annotations


def encode(data: bytes) -> bytes:
    """Local text to netascii (stateless; the output of splits concatenates)."""
    if b"\r" in data:
        data = data.replace(b"\r", b"\r\0")
    if b"\n" in data:
        data = data.replace(b"\n", b"\r\n")
    return data


def encoded_size(data: bytes) -> int:
    """``len(encode(data))`` without building it (for tsize)."""
    return len(data) + data.count(b"\r") + data.count(b"\n")


class Decoder:
    """Incremental netascii decoder: ``feed`` chunks, then ``flush``."""

    def __init__(self) -> None:
        self._held_cr = False

    def feed(self, chunk: bytes | memoryview) -> bytes:
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if not chunk:
            return b""
        if chunk[-1] == 0x0D:  # a trailing CR: its meaning depends on the next byte
            chunk = chunk[:-1]
            self._held_cr = True
        if b"\r" not in chunk:
            return chunk
        return chunk.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r")

    def flush(self) -> bytes:
        """End of transfer: a held CR was a bare CR at the very end."""
        if self._held_cr:
            self._held_cr = False
            return b"\r"
        return b""


def decode(data: bytes) -> bytes:
    """Decode a whole netascii stream."""
    decoder = Decoder()
    return decoder.feed(data) + decoder.flush()
