"""The ``chat`` service: multi-room line chat (seed 002 practice 1 / assignment 1).

Protocol, commands and the seed-compatibility rules live in
``inetkit.proto.chat`` (sans-IO); this module only moves bytes between
the connections and the shared ``ChatHub`` and applies the I/O policies:

- **Cheap fan-out**: after a connection's first read, its transport is
  switched from the asyncio stream to a small protocol that feeds each
  chunk straight into the hub; the hub's output of one event-loop pass is
  flushed once, one write per recipient (a room's bytes joined once and
  the same object handed to every member).  Per recipient, order is the
  hub's order.

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

#: first read through the stream: large enough to take everything the
#: StreamReader may already hold (its limit is 64 KiB, it pauses at twice that)
FIRST_READ = 1 << 24


def _room(value: Any) -> str | None:
    return None if room_key(value) else "must be 1-32 letters, digits, '_' or '-'"


class _Conn:
    """One live connection: its writer, transport (cached: the hot path),
    context, and ``ended``, resolved with the reason the session is over."""

    __slots__ = ("ctx", "ended", "last", "transport", "writer")

    def __init__(self, writer: asyncio.StreamWriter, ctx: ConnectionContext, ended: asyncio.Future[str]) -> None:
        self.writer = writer
        self.transport = writer.transport
        self.ctx = ctx
        self.ended = ended
        self.last = time.monotonic()

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)


class _ChatProtocol(asyncio.Protocol):
    """Takes over a connection's transport from the StreamReader after the
    first read: each chunk goes straight from ``data_received`` into the hub.

    Why not keep reading through the stream: every ``await reader.read()``
    costs a future, a task step and an ``asyncio.timeout`` timer, once per
    chunk per client; under a 100-sender flood that was a visible part of
    the server's CPU.  ``connection_lost`` is passed on to the stream's own
    protocol so the reader and writer still see the connection end.
    """

    def __init__(self, service: ChatService, cid: int, conn: _Conn, stream_protocol: asyncio.BaseProtocol) -> None:
        self.service = service
        self.cid = cid
        self.conn = conn
        self.stream_protocol = stream_protocol

    def data_received(self, data: bytes) -> None:
        try:
            self.service._receive(self.cid, self.conn, data)
        except Exception as exc:  # a bug must end this session, not the loop's callback
            if not self.conn.ended.done():
                self.conn.ended.set_exception(exc)

    def eof_received(self) -> bool:
        # Half-closed: the session ends, but the transport stays open for
        # writing until the session has left and its last replies went out
        # with the next flush (handle_async then returns and the writer is
        # closed).  Closing here would make the flush skip them.
        self.conn.end("disconnected")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.end("connection reset" if isinstance(exc, ConnectionError) else "disconnected")
        self.stream_protocol.connection_lost(exc)


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
        #: output of every event handled since the last flush (see _flush)
        self._pending = Outbox()
        self._flush_handle: asyncio.Handle | None = None
        #: sessions waiting for the next flush before they close (see handle_async)
        self._flush_waiters: list[asyncio.Future[None]] = []

    # -- one connection ------------------------------------------------------------
    async def handle_async(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ConnectionContext) -> None:
        cid = next(self._ids)
        transport = writer.transport
        if self.sndbuf:
            # a fixed kernel buffer: autotuning would let a stalled reader hold
            # megabytes in the kernel before our own queue cap even sees it
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
                except OSError:
                    pass
        loop = asyncio.get_running_loop()
        conn = self.conns[cid] = _Conn(writer, ctx, loop.create_future())
        idle = ctx.service.idle_timeout
        watchdog: asyncio.TimerHandle | None = None
        reason = "disconnected"
        try:
            self._apply(self.hub.connect(cid, ctx.peer[0], time.monotonic()))
            if cid not in self.hub.clients:  # refused (per-source limit): already closing
                return
            # The first read goes through the stream (it may already hold
            # bytes that arrived before this task ran); read() takes all of
            # them, and nothing can be added to the reader until the next
            # await, so the protocol switch below loses nothing.
            try:
                async with asyncio.timeout(idle):
                    data = await reader.read(FIRST_READ)
            except TimeoutError:
                reason = self._idle_out(cid, idle or 0.0)
                return
            if data:
                self._receive(cid, conn, data)
            if not data or reader.at_eof() or cid not in self.hub.clients or transport.is_closing():
                return  # EOF, or the first chunk already ended the session (exit, /quit)
            transport.set_protocol(_ChatProtocol(self, cid, conn, transport.get_protocol()))
            if idle:
                limit: float = idle

                def check_idle() -> None:
                    nonlocal watchdog
                    quiet = time.monotonic() - conn.last
                    if quiet >= limit:
                        conn.end(self._idle_out(cid, limit))
                    else:
                        watchdog = loop.call_later(limit - quiet, check_idle)

                watchdog = loop.call_later(limit, check_idle)
            reason = await conn.ended
        except ConnectionError:
            reason = "connection reset"
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if cid in self.hub.clients:
                self._apply(self.hub.disconnect(cid, reason))
            # The model closes the writer when we return: what is queued for
            # this client (its last replies, an idle notice) goes out first,
            # with the flush of this loop pass.  Waiting for it rather than
            # flushing now keeps a storm of leaves batched: a thousand
            # clients leaving at once cost one write per member per pass.
            try:
                if self._pending.ops and not transport.is_closing():
                    await self._next_flush()
            finally:
                self.conns.pop(cid, None)
            if reason.startswith("idle"):
                ctx.log.info("chat: %s: %s", ctx.peer_text, reason)

    def _receive(self, cid: int, conn: _Conn, data: bytes) -> None:
        now = time.monotonic()
        conn.last = now
        conn.ctx.bytes_in += len(data)
        self._apply(self.hub.receive(cid, data, now))

    def _idle_out(self, cid: int, idle: float) -> str:
        """Queue the idle notice (after what is queued for the client) and
        return the session's end reason."""
        box = Outbox()
        box.send(cid, encode_line(f"* no line from you for {idle:g} s; bye"))
        self._apply(box)
        return f"idle for {idle:g} s"

    def _next_flush(self) -> asyncio.Future[None]:
        """Resolved once the flush of this loop pass has written."""
        waiter = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(waiter)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        return waiter

    # -- applying the hub's output ---------------------------------------------------
    def _apply(self, box: Outbox) -> None:
        """Queue ``box``'s output for the flush at the end of this loop pass;
        its close orders flush at once (the goodbye must go out first)."""
        if box.ops:
            self._pending.absorb(box)
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        if box.closes:
            self._flush()
            conns = self.conns
            for cid, why in box.closes:
                conn = conns.get(cid)
                if conn is not None and not conn.transport.is_closing():
                    if why not in ("quit", "exit"):
                        conn.ctx.log.warning("chat: closing %s: %s", conn.ctx.peer_text, why)
                    conn.writer.close()  # flushes the goodbye, then closes
                if conn is not None:
                    conn.end(why)

    def _flush(self) -> None:
        """Write everything queued since the last flush: one write per recipient.

        Why deferred: under load many clients' lines arrive in one pass of
        the event loop; writing each line to each member at once costs a
        system call per line per member, while one flush per pass writes
        each member one joined chunk (the same bytes object for a whole
        room).  The flush runs as the loop's next callback, so a message
        waits microseconds, never a timer.
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flush_waiters:
            waiters, self._flush_waiters = self._flush_waiters, []
            try:
                self._write_pending()
            finally:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        else:
            self._write_pending()

    def _write_pending(self) -> None:
        pending = self._pending
        if not pending.ops:
            return
        self._pending = Outbox()
        overflowed: list[int] = []
        conns = self.conns
        cap = self.queue_bytes
        # the fan-out hot path: a thousand members per room message
        for targets, data in pending.writes():
            size = len(data)
            for cid in targets:
                conn = conns.get(cid)
                if conn is None:
                    continue
                transport = conn.transport
                if transport.is_closing():
                    continue
                transport.write(data)
                conn.ctx.bytes_out += size
                if transport.get_write_buffer_size() > cap:
                    overflowed.append(cid)
        for cid in overflowed:
            self._drop(cid)

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
        conn.end("too slow: output queue overflow")
        # its leave notice goes to the others, in order with what they already got
        self._apply(self.hub.disconnect(cid, "too slow: output queue overflow"))

    # -- lifecycle ---------------------------------------------------------------------
    def begin_stop(self) -> None:
        """The daemon is stopping: chat sessions never end on their own, so
        tell every client and close (flushing what is queued) right away."""
        self._flush()
        notice = encode_line("* server shutting down; bye")
        for conn in list(self.conns.values()):
            if not conn.transport.is_closing():
                conn.transport.write(notice)
                conn.writer.close()

    async def aclose(self) -> None:
        self.begin_stop()
