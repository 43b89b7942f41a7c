"""``file-push``: the lecture-004 file server, kept wire-compatible.

On every connection the service sends the configured file's bytes (by
``sendfile``, zero-copy), half-closes its side with ``shutdown(SHUT_WR)`` so
that the client's read loop sees EOF, then reads the client's reply (the
seed's client writes ``"Thank you\\n"``), at most ``reply_max`` bytes or until
the client closes, and logs it.  No framing, no size header: end of file is
end of connection, exactly as in the seed.

Unlike the seed it keeps serving after one client, opens the file per
connection (so a replaced file is picked up), logs a short file as an error
instead of sending garbage, and bounds the reply by size and idle timeout.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from importlib import resources
from typing import Any, ClassVar

from inetkit.errors import ConfigError
from inetkit.services.base import ConnectionContext
from inetkit.services.channel import ChannelService
from inetkit.services.options import Option, positive


def sample_path() -> str:
    """The small text file shipped in the package (the default ``path``)."""
    return str(resources.files("inetkit") / "data" / "file-push.txt")


class FilePushService(ChannelService):
    name = "file-push"
    summary = "seed 004 file server: send a file, shutdown(SHUT_WR), read the client's 'Thank you'"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "path": Option(str, "", help="file to send (default: a sample shipped with inetkit)"),
        "reply_max": Option(int, 1024, help="most bytes of the client's reply that are read and logged", check=positive),
    }

    def __init__(self, options: Any = None, where: str = "options") -> None:
        super().__init__(options, where)
        self.path = self.options.path or sample_path()
        # refuse a config that cannot work; a file that goes away later is
        # reported per connection instead
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(f"option 'path': {self.path}: {exc.strerror}", where) from None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"option 'path': {self.path} is not a regular file", where)


    async def serve(self, ch: Any, ctx: ConnectionContext) -> bytes | None:
        """Send, half-close, read the reply; returns the reply (None if the file failed)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            # Nothing sensible to send: closing without data would look like an
            # empty file to the seed's client, so reset instead.
            ctx.log.error("%s: cannot open %s: %s", ctx.service.name, self.path, exc.strerror)
            _abort(ch)
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                ctx.log.error("%s: %s is not a regular file", ctx.service.name, self.path)
                _abort(ch)
                return None
            sent = await ch.sendfile(fd, 0, st.st_size)
            ctx.bytes_out += sent
            if sent < st.st_size:
                ctx.log.error("%s: %s shrank while being sent (%d of %d bytes)", ctx.service.name, self.path, sent, st.st_size)
                _abort(ch)
                return None
        finally:
            os.close(fd)
        ch.shutdown_write()
        reply = await self._read_reply(ch)
        ctx.bytes_in += len(reply)
        ctx.log.info("%s: sent %d bytes to %s, reply %r", ctx.service.name, sent, ctx.peer_text,
                     reply.decode("utf-8", "replace").rstrip("\n"))
        return reply

    async def _read_reply(self, ch: Any) -> bytes:
        buf = bytearray(self.options.reply_max)
        view = memoryview(buf)
        got = 0
        while got < len(buf):
            n = await ch.recv_into(view[got:])
            if n == 0:
                break
            got += n
            if buf.find(b"\n", 0, got) >= 0:
                break  # the seed's client sends one line, then closes
        return bytes(view[:got])


def _abort(ch: Any) -> None:
    """Reset the connection (SO_LINGER 0) so the client sees an error, not EOF."""
    try:
        # linger 0: the model's final close of the socket sends RST
        ch.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
