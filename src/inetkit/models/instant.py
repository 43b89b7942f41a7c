"""The async model's path for services that answer at accept time and close
(daytime, time): accept, send the reply, close: no transport, no protocol.

Why a path of its own: for such a connection the framework's usual costs
(a uvloop transport with its epoll registration and deregistration, the
TCP_NODELAY setsockopt, two address lookups, a protocol object, idle
timers) are most of what the daemon spends, and the answer never depends on
anything the peer sends.  inetd and xinetd serve their internal daytime and
time the same way, in-process, straight from the accepted descriptor.

What stays the same as on the session path: access rules, limits and the
per-source rate (``admit_instant``), the counters and the one log line per
connection (``finished``).  A connection served whole inside one callback
is never seen alive by anything else, so it is not held among the live
connections (``ServiceRuntime.admit_instant``), and an answer that changes
only once a second (``answers_per_second``) is made once a second.
Measured: Python per connection 4.6 -> 1.8 us in-process, and 11 % less
daemon CPU per connection (``python -m bench.pairab``, 12 pairs).
The reply goes out with MSG_DONTWAIT: it is a
few dozen bytes into an empty send buffer, so it always fits; if it ever
does not (a service with a larger reply), the rest is handed to an ordinary
transport, which sends it under flow control before closing.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import socket
import time
from typing import Any

from inetkit import logs as _logs
from inetkit.io.addresses import plain_address
from inetkit.logs import BATCH_VALUES, InstantLines
from inetkit.models.accept import PER_CONNECTION, TRANSIENT
from inetkit.models.runtime import ServiceRuntime
from inetkit.services.base import ConnectionContext, answers_per_second, instant_answer

#: connections accepted per readiness callback before yielding to the loop.
#: One, as inetd: the loop's epoll is level-triggered, so a backlog is still
#: drained, a connection per loop pass, and no accept ends in EAGAIN (raised
#: as BlockingIOError, ~1 us of Python per callback).  Measured against 64,
#: 10 clients, 12 paired runs: 4.5 % less daemon CPU per connection.
ACCEPT_BATCH = 1
#: outcome of a send that failed because the peer was already gone
_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN}
_wall = time.time


async def serve_instant(listener: socket.socket, rt: ServiceRuntime) -> None:
    """Serve ``listener`` until cancelled, one reply per accepted connection."""
    service = rt.service
    assert service is not None
    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    fd = listener.fileno()
    open_session = service.open_session
    service_ctx = rt.ctx
    admit, finished, hold = rt.admit_instant, rt.finished, rt.hold
    counters = rt.counters
    # daytime and time vouch that their answer changes once a second: made
    # for the first connection of each second, not per connection
    per_second = answers_per_second(service)
    answer_second, answer = -1, b""
    # A listener bound to one address has one local address; a wildcard one
    # needs getsockname() per connection.
    bound = plain_address(listener.getsockname())
    wildcard = bound[0] in ("0.0.0.0", "::")
    backoff = 0.01
    # socket.accept() converts family and type to enums and builds a
    # socket.socket per connection (about 1 µs); the C-level pieces it is
    # made of do the same job: accept4 (non-blocking, close-on-exec) and a
    # plain _socket.socket around the descriptor.
    raw_accept = listener._accept  # type: ignore[attr-defined]
    family, kind, proto = listener.family, listener.type, listener.proto
    # an IPv4 listener's peers already come as (host, port); IPv6 ones carry
    # flow info and scope, and may be IPv4-mapped
    plain_peers = family == socket.AF_INET

    def serve_one(conn: _socket.socket, addr: Any) -> None:
        nonlocal answer_second, answer
        local = plain_address(conn.getsockname()) if wildcard else bound
        ctx = ConnectionContext(service_ctx, addr if plain_peers else plain_address(addr), local)
        if not admit(ctx):
            conn.close()
            return
        outcome = "ok"
        reply = b""
        try:
            if per_second:
                second = int(_wall())
                if second != answer_second:
                    answer, answer_second = instant_answer(open_session(ctx)), second
                reply = answer
            else:
                reply = instant_answer(open_session(ctx))
            sent = conn.send(reply, socket.MSG_DONTWAIT) if reply else 0
            ctx.bytes_out += sent
            if sent < len(reply):
                hold(ctx)
                _finish_later(loop, conn, reply[sent:], ctx, finished)
                return
        except BlockingIOError:
            hold(ctx)
            _finish_later(loop, conn, reply, ctx, finished)
            return
        except OSError as exc:
            outcome = "reset" if exc.errno in _GONE else "error"
        except Exception as exc:  # a broken service must not take the loop down
            outcome = "error"
            service_ctx.log.error("%s: session failed for %s: %r", service_ctx.name, ctx.peer_text, exc)
        conn.close()
        if outcome == "ok" and plain_peers and rt.events is None:
            # The common case, what ``finished`` does for it inlined, down
            # to the connection's log line: for a connection this short the
            # calls and lookups of the general path are most of what its
            # line costs (issue 3: the log <= 5 % of the connection rate).
            counters.bytes_out += sent
            if rt.connection_log:
                log = _logs._connection_log
                if log is not batch_log:
                    _bind_log(log)
                if instant_lines is not None:
                    now = _wall()
                    if now >= instant_lines.until or sent != instant_lines.ok_bytes_out:
                        instant_lines.renew(now, 0, sent, "ok")
                    add_values(addr)
                    if len(batch_values) >= BATCH_VALUES:
                        log.flush()  # type: ignore[union-attr]
            return
        finished(ctx, outcome)

    # the connection log's batch this listener's lines go into (see above)
    batch_log: Any = False
    instant_lines: InstantLines | None = None
    add_values: Any = None
    batch_values: list[Any] = []

    def _bind_log(log: Any) -> None:
        nonlocal batch_log, instant_lines, add_values, batch_values
        batch_log = log
        instant_lines = None if log is None or log.json else rt.instant_lines(log)
        if instant_lines is not None:
            add_values, batch_values = instant_lines.add_values, log.buffer

    def on_readable() -> None:
        nonlocal backoff
        for _ in range(ACCEPT_BATCH):
            try:
                conn_fd, addr = raw_accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in PER_CONNECTION:
                    continue
                if exc.errno in TRANSIENT:
                    # out of descriptors or memory: stop accepting for a while
                    rt.ctx.log.warning("%s: accept: %s; retrying in %.2fs", rt.config.name, exc.strerror, backoff)
                    loop.remove_reader(fd)
                    loop.call_later(backoff, _resume)
                    backoff = min(backoff * 2, 1.0)
                    return
                raise
            backoff = 0.01
            serve_one(_socket.socket(family, kind, proto, conn_fd), addr)

    def _resume() -> None:
        if not stopped.done():
            loop.add_reader(fd, on_readable)

    stopped: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, on_readable)
    try:
        await stopped  # runs until the daemon cancels this listener
    finally:
        loop.remove_reader(fd)


class _Remainder(asyncio.Protocol):
    """Sends what the first send could not, then closes (rare: see module doc)."""

    def __init__(self, data: bytes, ctx: ConnectionContext, finished: Any) -> None:
        self.data, self.ctx, self.finished = data, ctx, finished
        self.outcome = "ok"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.ctx.bytes_out += len(self.data)
        transport.write(self.data)  # type: ignore[attr-defined]
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.outcome = "reset" if isinstance(exc, ConnectionError) else "error"
        self.finished(self.ctx, self.outcome)


def _finish_later(loop: asyncio.AbstractEventLoop, raw: _socket.socket, rest: bytes,
                  ctx: ConnectionContext, finished: Any) -> None:
    conn = socket.socket(raw.family, raw.type, raw.proto, raw.detach())

    async def hand_over() -> None:
        try:
            await loop.connect_accepted_socket(lambda: _Remainder(rest, ctx, finished), conn)
        except OSError:
            conn.close()
            finished(ctx, "reset")

    task = loop.create_task(hand_over())
    _HANDOVERS.add(task)
    task.add_done_callback(_HANDOVERS.discard)


#: hand-over tasks still running; kept referenced so they are not collected
_HANDOVERS: set[asyncio.Task[None]] = set()
