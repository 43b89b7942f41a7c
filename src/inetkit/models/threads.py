"""The ``thread`` model: a bounded pool of threads running the service's
blocking handler; when every thread is busy, new clients wait in the backlog."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

from inetkit.io.addresses import plain_address
from inetkit.models.accept import accept_loop
from inetkit.models.runtime import ServiceRuntime
from inetkit.services.base import ConnectionContext


async def serve(listener: socket.socket, rt: ServiceRuntime) -> None:
    service = rt.service
    assert service is not None
    loop = asyncio.get_running_loop()
    size = rt.config.max_children
    pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"inetkit-{rt.config.name}")

    def serve_one(conn: socket.socket, ctx: ConnectionContext) -> str:
        try:
            conn.setblocking(True)
            service.handle_blocking(conn, ctx)
            return "ok"
        except (ConnectionError, TimeoutError):
            return "reset"
        except Exception as exc:
            rt.ctx.log.error("%s: handler failed for %s: %r", rt.config.name, ctx.peer_text, exc)
            return "error"
        finally:
            conn.close()

    async def handle(conn: socket.socket) -> None:
        try:
            ctx = ConnectionContext(rt.ctx, plain_address(conn.getpeername()), plain_address(conn.getsockname()))
        except OSError:
            conn.close()
            return
        if not rt.admit(ctx):
            conn.close()
            return
        rt.set_closer(ctx, lambda: _shutdown(conn))
        outcome = "error"
        try:
            outcome = await loop.run_in_executor(pool, serve_one, conn, ctx)
        finally:
            rt.finished(ctx, outcome)

    try:
        await accept_loop(listener, rt, handle, concurrency=size)
    finally:
        # running handlers finish on their own (idle timeouts bound them)
        pool.shutdown(wait=False, cancel_futures=True)


def _shutdown(conn: socket.socket) -> None:
    """Wake a handler blocked in recv/send (the drain grace period is over)."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
