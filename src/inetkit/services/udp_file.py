"""The ``udp-file`` service: the seed's raw UDP file receiver (002 practice 2,
assignment 2), 8080/udp.

Wire protocol, exactly as the seed's receiver reads it: every datagram is a
piece of the file, appended in arrival order; a datagram that *starts with*
``DONE`` (the seed compares 4 bytes with ``strncmp``) -- or an empty
datagram, which ends the seed's ``recvfrom(...) > 0`` loop -- ends the file,
and the receiver answers ``DONE`` (4 bytes, no NUL).

What inetkit adds: each sender (source address and port) gets its own file,
so concurrent senders are kept apart; files go to ``directory`` (default
``$XDG_DATA_HOME/inetkit/udp-file``, created when needed) as
``received_file-HOST-PORT`` (written under a temporary name, renamed at
DONE); the log reports how many bytes arrived; a sender silent for
``idle_timeout`` seconds has its partial file discarded; ``max_size`` and
``max_senders`` bound what one sender or all of them can make us store.
The seed reads into a 1024-byte buffer (longer datagrams were truncated);
inetkit keeps whole datagrams up to 65507 bytes.

**This protocol cannot recover a lost datagram**: UDP gives no delivery
guarantee and the seed's protocol has no sequence numbers, no
acknowledgements and no length, so a dropped, duplicated or reordered
datagram silently corrupts the file (and a lost ``DONE`` leaves the sender
waiting).  Use TFTP (``inetkit tftp put``) for files that matter.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

from inetkit.services.base import ConnectionContext, Service, is_reflection_risk
from inetkit.services.options import Option, non_negative, positive

DONE = b"DONE"


@dataclass
class _Incoming:
    file: BinaryIO
    temp: str
    final: str
    size: int = 0
    datagrams: int = 0
    last: float = 0.0


def _safe(host: str) -> str:
    return re.sub(r"[^0-9A-Za-z.]", "_", host)


class UdpFileService(Service):
    name = "udp-file"
    summary = "receive a file sent as raw datagrams ending in DONE, answer DONE (seed 002 practice 2)"
    transports = frozenset({"udp"})
    tcp_models = frozenset()
    udp_models = frozenset({"datagram"})
    OPTIONS: ClassVar[dict[str, Option]] = {
        "directory": Option(str, "", help="where received files are stored as received_file-HOST-PORT "
                            "(empty: $XDG_DATA_HOME/inetkit/udp-file, else ~/.local/share/inetkit/udp-file)"),
        "max_size": Option(int, 1 << 30, help="largest file per sender in bytes (0: no limit)", check=non_negative),
        "max_senders": Option(int, 64, help="senders receiving at the same time", check=positive),
        "idle_timeout": Option(float, 60.0, help="seconds of silence after which a partial file is discarded", check=positive),
    }

    def __init__(self, options: Any = None, where: str = "options") -> None:
        super().__init__(options, where)
        self.incoming: dict[tuple[str, int], _Incoming] = {}
        #: (peer, path, bytes) of every completed file, newest last (bounded)
        self.completed: list[tuple[tuple[str, int], str, int]] = []

    def handle_datagram(self, data: bytes, ctx: ConnectionContext) -> Iterable[bytes]:
        if is_reflection_risk(ctx.peer):
            return ()
        now = time.monotonic()
        self._expire(now, ctx)
        peer = ctx.peer
        entry = self.incoming.get(peer)
        if not data or data[:4] == DONE:
            if entry is None:
                # DONE without data (or a repeated DONE whose answer was lost): just answer
                return (DONE,)
            del self.incoming[peer]
            entry.file.close()
            os.replace(entry.temp, entry.final)
            self.completed = (self.completed + [(peer, entry.final, entry.size)])[-100:]
            ctx.log.info("udp-file %s: file received: %d bytes in %d datagrams -> %s",
                         ctx.peer_text, entry.size, entry.datagrams, entry.final)
            return (DONE,)
        if entry is None:
            if len(self.incoming) >= self.options.max_senders:
                ctx.log.warning("udp-file %s: too many senders at once (max_senders %d): datagram dropped",
                                ctx.peer_text, self.options.max_senders)
                return ()
            entry = self._open(peer)
            self.incoming[peer] = entry
        limit = self.options.max_size
        if limit and entry.size + len(data) > limit:
            ctx.log.warning("udp-file %s: file exceeds max_size %d: discarded", ctx.peer_text, limit)
            self._discard(peer)
            return ()
        entry.file.write(data)
        entry.size += len(data)
        entry.datagrams += 1
        entry.last = now
        ctx.bytes_in = len(data)
        return ()

    def _open(self, peer: tuple[str, int]) -> _Incoming:
        directory = self.directory()
        os.makedirs(directory, exist_ok=True)
        final = os.path.join(directory, f"received_file-{_safe(peer[0])}-{peer[1]}")
        temp = os.path.join(directory, f".received_file-{_safe(peer[0])}-{peer[1]}.{secrets.token_hex(4)}.part")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        return _Incoming(os.fdopen(fd, "wb"), temp, final, last=time.monotonic())

    def directory(self) -> str:
        if self.options.directory:
            return os.path.abspath(os.path.expanduser(self.options.directory))
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        return os.path.join(base, "inetkit", "udp-file")

    def _expire(self, now: float, ctx: ConnectionContext) -> None:
        idle = self.options.idle_timeout
        for peer, entry in list(self.incoming.items()):
            if now - entry.last > idle:
                ctx.log.warning("udp-file %s:%d: no DONE after %.0f s: partial file of %d bytes discarded",
                                peer[0], peer[1], idle, entry.size)
                self._discard(peer)

    def _discard(self, peer: tuple[str, int]) -> None:
        entry = self.incoming.pop(peer)
        entry.file.close()
        try:
            os.unlink(entry.temp)
        except FileNotFoundError:
            pass

    async def aclose(self) -> None:
        for peer in list(self.incoming):
            self._discard(peer)
