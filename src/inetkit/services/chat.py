"""The ``chat`` service: multi-room line chat (seed 002 practice 1 / assignment 1).

Protocol, commands and the seed-compatibility rules live in
``inetkit.proto.chat`` (sans-IO); this module only moves bytes between
asyncio streams and the shared ``ChatHub`` and applies the I/O policies:

- **Shared state**: one hub per listener, in the daemon's event loop, so the
  service runs only under the ``async`` model (fork/exec/thread would split
  or race the rooms; config validation refuses them).
- **A slow reader never stalls the room**: writes never wait.  Each client's
  outgoing queue is its transport's write buffer, capped at ``queue_bytes``;
  when a write pushes it over, that client is dropped at once (its queue
  discarded, the reason logged, a leave notice sent to its room) and
  everyone else keeps receiving, in order.  The kernel's part of that
  queue is pinned with ``SO_SNDBUF`` (``sndbuf``), so what a stalled client
  can hold is bounded end to end.
- **Idle timeout**: the daemon's ``limits.idle_timeout`` (seconds without a
  line from the client) ends the session with a notice.
- **Per-source limit** (``max_per_source``) and **message rate**
  (``rate``/``burst``, flooding gets a notice, then a disconnect after
  ``flood_strikes`` more dropped lines) are enforced by the hub.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Mapping
from typing import Any

from inetkit.proto.chat import (
    MAX_LINE,
    ChatHub,
    HubConfig,
    Outbox,
    encode_line,
    room_key,
)
from inetkit.services.base import ConnectionContext, Service
from inetkit.services.options import Option, non_negative, positive

READ_CHUNK = 65536


def _room(value: Any) -> str | None:
    return None if room_key(value) else "must be 1-32 letters, digits, '_' or '-'"


class _Conn:
    """One live connection: its writer, transport (cached: the hot path) and context."""

    __slots__ = ("ctx", "transport", "writer")

    def __init__(self, writer: asyncio.StreamWriter, ctx: ConnectionContext) -> None:
        self.writer = writer
        self.transport = writer.transport
        self.ctx = ctx


class ChatService(Service):
    name = "chat"
    summary = "multi-room line chat (nicknames, rooms, /msg); seed 002 chat compatible"
    transports = frozenset({"tcp"})
    tcp_models = frozenset({"async"})
    tcp_default_model = "async"
    shared_state = True
    OPTIONS = {
        "default_room": Option(str, "lobby", "room every client enters after naming itself", _room),
        "max_line": Option(int, MAX_LINE, "longest line in bytes (ending excluded); longer ones are refused", positive),
        "queue_bytes": Option(int, 128 * 1024, "outgoing bytes a client may lag behind before it is dropped", positive),
        "sndbuf": Option(int, 64 * 1024, "kernel send buffer per client (SO_SNDBUF; 0 = autotuned, up to MBs per slow reader)", non_negative),
        "rate": Option((int, float), 5.0, "lines per second per client (0 = unlimited)", non_negative),
        "burst": Option(int, 20, "lines a client may send at once above the rate", positive),
        "flood_strikes": Option(int, 10, "lines dropped for flooding, after the notice, before a disconnect", non_negative),
        "max_per_source": Option(int, 0, "connections per source address (0 = unlimited)", non_negative),
        "ask_nick": Option(bool, False, "greet with a nickname question (off: wait for the client's first line, as the seed's server)"),
    }

    def __init__(self, options: Mapping[str, Any] | None = None, where: str = "options") -> None:
        super().__init__(options, where)
        o = self.options
        self.hub = ChatHub(HubConfig(
            default_room=room_key(o.default_room) or "lobby",
            max_line=o.max_line,
            rate=float(o.rate),
            burst=o.burst,
            flood_strikes=o.flood_strikes,
            max_per_source=o.max_per_source,
            ask_nick=o.ask_nick,
        ))
        self.queue_bytes: int = o.queue_bytes
        self.sndbuf: int = o.sndbuf
        self.conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)

    # -- one connection ------------------------------------------------------------
    async def handle_async(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ConnectionContext) -> None:
        cid = next(self._ids)
        if self.sndbuf:
            # a fixed kernel buffer: autotuning would let a stalled reader hold
            # megabytes in the kernel before our own queue cap even sees it
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
                except OSError:
                    pass
        self.conns[cid] = _Conn(writer, ctx)
        reason = "disconnected"
        try:
            self._apply(self.hub.connect(cid, ctx.peer[0], time.monotonic()))
            idle = ctx.service.idle_timeout
            while cid in self.hub.clients and not writer.transport.is_closing():
                try:
                    async with asyncio.timeout(idle):
                        data = await reader.read(READ_CHUNK)
                except TimeoutError:
                    reason = f"idle for {idle:g} s"
                    self._write(cid, encode_line(f"* no line from you for {idle:g} s; bye"))
                    break
                if not data:
                    break
                ctx.bytes_in += len(data)
                self._apply(self.hub.receive(cid, data, time.monotonic()))
        except ConnectionError:
            reason = "connection reset"
        finally:
            if cid in self.hub.clients:
                self._apply(self.hub.disconnect(cid, reason))
            self.conns.pop(cid, None)
            if reason.startswith("idle"):
                ctx.log.info("chat: %s: %s", ctx.peer_text, reason)

    # -- applying the hub's output ---------------------------------------------------
    def _apply(self, box: Outbox) -> None:
        overflowed: list[int] = []
        conns = self.conns
        cap = self.queue_bytes
        # the fan-out hot path: a thousand members per room message
        for cid, data in box.items():
            conn = conns.get(cid)
            if conn is None:
                continue
            transport = conn.transport
            if transport.is_closing():
                continue
            transport.write(data)
            conn.ctx.bytes_out += len(data)
            if transport.get_write_buffer_size() > cap:
                overflowed.append(cid)
        for cid, why in box.closes:
            conn = conns.get(cid)
            if conn is not None and not conn.transport.is_closing():
                if why not in ("quit", "exit"):
                    conn.ctx.log.warning("chat: closing %s: %s", conn.ctx.peer_text, why)
                conn.writer.close()  # flushes the goodbye, then closes
        for cid in overflowed:
            self._drop(cid)

    def _write(self, cid: int, data: bytes) -> None:
        conn = self.conns.get(cid)
        if conn is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            conn.ctx.bytes_out += len(data)

    def _drop(self, cid: int) -> None:
        """Disconnect a client whose outgoing queue overflowed (a slow reader)."""
        conn = self.conns.get(cid)
        if conn is None or conn.transport.is_closing():
            return
        client = self.hub.clients.get(cid)
        conn.ctx.log.warning(
            "chat: dropping %s (%s): output queue %d bytes over the %d-byte cap (slow reader)",
            conn.ctx.peer_text, client.nick if client and client.nick else "unnamed",
            conn.transport.get_write_buffer_size(), self.queue_bytes,
        )
        conn.transport.abort()  # discard its queue: waiting for it is what we must not do
        # its leave notice goes to the others now, in order with what they already got
        self._apply(self.hub.disconnect(cid, "too slow: output queue overflow"))

    # -- lifecycle ---------------------------------------------------------------------
    def begin_stop(self) -> None:
        """The daemon is stopping: chat sessions never end on their own, so
        tell every client and close (flushing what is queued) right away."""
        notice = encode_line("* server shutting down; bye")
        for conn in list(self.conns.values()):
            if not conn.transport.is_closing():
                conn.transport.write(notice)
                conn.writer.close()

    async def aclose(self) -> None:
        self.begin_stop()
