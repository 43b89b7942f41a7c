"""Drive a sans-IO StreamSession from asyncio (the async and iterative models).

``SessionProtocol`` is a plain ``asyncio.Protocol``: per chunk it costs one
method call into the session and one ``transport.write``, which keeps the
framework's overhead near a hand-written Protocol server.  Flow control is
two-way: when the peer stops reading, our writes pause our reads (so an echo
peer that never reads cannot make us buffer without bound), and a producing
session (chargen) only produces while the transport is below its high-water
mark.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol, cast

from inetkit.errors import RemoteProtocolError
from inetkit.io.addresses import plain_address
from inetkit.services.base import ConnectionContext, ServiceContext, StreamSession

#: most bytes one produce() burst may add before yielding to the loop
PRODUCE_BURST = 256 * 1024


class ConnectionHooks(Protocol):
    """What a model tells the daemon about each connection (limits, logging)."""

    ctx: ServiceContext

    def admit(self, conn: ConnectionContext, pid: int | None = None) -> bool:
        """False refuses the connection (limits, access rules); it is then closed."""

    def finished(self, conn: ConnectionContext, outcome: str) -> None:
        """The connection is over; ``outcome`` is ok, timeout, reset, error..."""


class SessionProtocol(asyncio.Protocol):
    """One connection: a session, its context and an idle timer."""

    def __init__(self, hooks: ConnectionHooks, open_session: Callable[[ConnectionContext], StreamSession]) -> None:
        self.hooks = hooks
        self.service_ctx = hooks.ctx
        self.open_session = open_session
        self.admitted = False
        self.transport: asyncio.Transport | None = None
        self.session: StreamSession | None = None
        self.ctx: ConnectionContext | None = None
        self.outcome = "ok"
        self.paused = False
        self.shut = False
        self.last_activity = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio callbacks -------------------------------------------------
    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio subclasses, so no isinstance check
        transport = cast(asyncio.Transport, base)
        self.transport = transport
        # No setsockopt(TCP_NODELAY) here: asyncio and uvloop both set it on
        # every TCP transport, and fetching the socket object costs uvloop a
        # new socket.socket per connection (~3 µs of a ~30 µs connection).
        peer = plain_address(transport.get_extra_info("peername"))
        local = plain_address(transport.get_extra_info("sockname"))
        self.ctx = ConnectionContext(self.service_ctx, peer, local)
        if not self.hooks.admit(self.ctx):
            transport.abort()
            return
        self.admitted = True
        set_closer = getattr(self.hooks, "set_closer", None)
        if set_closer is not None:  # lets the daemon abort it after the drain grace period
            set_closer(self.ctx, transport.abort)
        try:
            self.session = self.open_session(self.ctx)
            self._send(self.session.start())
        except Exception as exc:  # a broken session must not take the loop down
            self._fail(exc)
            return
        timeout = self.service_ctx.idle_timeout
        if timeout:
            self.last_activity = self.loop.time()
            self.timer = self.loop.call_later(timeout, self._check_idle)
        if self.service_ctx.session_timeout:
            self.deadline = self.loop.call_later(self.service_ctx.session_timeout, self._expire)
        self._after_output()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self.transport is None:
            return
        self.last_activity = self.loop.time()
        ctx = self.ctx
        assert ctx is not None
        ctx.bytes_in += len(data)
        try:
            out = session.receive(data)
        except Exception as exc:
            self._fail(exc)
            return
        if out:
            ctx.bytes_out += len(out)
            self.transport.write(out)
        if session.closing or session.shutdown_write or session.producing:
            self._after_output()

    def eof_received(self) -> bool:
        if self.session is None:
            return False
        try:
            self._send(self.session.receive_eof())
        except Exception as exc:
            self._fail(exc)
            return False
        self._after_output()
        # keep our side open only while a producing session still has output
        return bool(self.session.producing and not self.session.closing)

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._after_output()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.deadline is not None:
            self.deadline.cancel()
        if exc is not None and self.outcome == "ok":
            self.outcome = "reset" if isinstance(exc, ConnectionError) else "error"
        if self.session is not None:
            try:
                self.session.connection_lost(exc)
            except Exception:
                self.service_ctx.log.exception("%s: error while closing a session", self.service_ctx.name)
        if self.admitted and self.ctx is not None:
            self.hooks.finished(self.ctx, self.outcome)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- helpers -------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if data and self.transport is not None:
            assert self.ctx is not None
            self.ctx.bytes_out += len(data)
            self.transport.write(data)

    def _after_output(self) -> None:
        session, transport = self.session, self.transport
        if session is None or transport is None or transport.is_closing():
            return
        if session.closing:
            transport.close()  # flushes what is buffered, then closes
            return
        if session.shutdown_write and not self.shut and transport.can_write_eof():
            self.shut = True
            transport.write_eof()
        if session.producing and not self.paused and not self.shut:
            self._produce()

    def _produce(self) -> None:
        session, transport = self.session, self.transport
        if session is None or transport is None:
            return
        produced = 0
        try:
            while session.producing and not self.paused and produced < PRODUCE_BURST and not transport.is_closing():
                chunk = session.produce(65536)
                if not chunk:
                    break
                produced += len(chunk)
                self._send(chunk)
        except Exception as exc:
            self._fail(exc)
            return
        if produced:
            self.last_activity = self.loop.time()
        if session.closing:
            transport.close()
        elif session.producing and not self.paused and produced >= PRODUCE_BURST:
            # the socket took everything: yield to other connections, then go on
            self.loop.call_soon(self._produce)

    def _expire(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.outcome = "timeout"
            self.transport.abort()

    def _check_idle(self) -> None:
        timeout = self.service_ctx.idle_timeout
        if self.transport is None or self.transport.is_closing() or not timeout:
            return
        idle = self.loop.time() - self.last_activity
        if idle >= timeout:
            self.outcome = "timeout"
            self.transport.abort()
        else:
            self.timer = self.loop.call_later(timeout - idle, self._check_idle)

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, RemoteProtocolError):
            self.outcome = "protocol-error"
            self.service_ctx.log.info(
                "%s: protocol error from %s: %s",
                self.service_ctx.name,
                self.ctx.peer_text if self.ctx else "?",
                exc,
            )
        else:
            self.outcome = "error"
            self.service_ctx.log.error(
                "%s: session failed for %s: %r",
                self.service_ctx.name,
                self.ctx.peer_text if self.ctx else "?",
                exc,
            )
        if self.transport is not None:
            self.transport.abort()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (faster per packet), asyncio's loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
