"""Shared by the in-daemon TCP models: run one accepted connection the way
its service prefers (session protocol, asyncio streams, or blocking code in a
thread) and report it to the runtime."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable

from inetkit.io.addresses import plain_address
from inetkit.io.aio import SessionProtocol
from inetkit.models.runtime import ServiceRuntime
from inetkit.services.base import ConnectionContext, Service


def has_session(service: Service) -> bool:
    return type(service).open_session is not Service.open_session


def protocol_factory(rt: ServiceRuntime) -> Callable[[], SessionProtocol]:
    """A Protocol factory for ``loop.create_server`` (session services)."""
    assert rt.service is not None
    open_session = rt.service.open_session
    return lambda: SessionProtocol(rt, open_session)


async def run_connection(conn: socket.socket, rt: ServiceRuntime) -> None:
    """Serve one accepted socket to completion (used by the iterative model)."""
    service = rt.service
    assert service is not None
    loop = asyncio.get_running_loop()
    if service.handle_async is None and has_session(service):
        try:
            _, protocol = await loop.connect_accepted_socket(protocol_factory(rt), conn)
        except OSError:  # reset before the transport existed
            conn.close()
            return
        await protocol.closed
        return
    try:
        ctx = ConnectionContext(rt.ctx, plain_address(conn.getpeername()), plain_address(conn.getsockname()))
    except OSError:  # the client reset before we got to it
        conn.close()
        return
    if not rt.admit(ctx):
        conn.close()
        return
    rt.set_closer(ctx, lambda: _shutdown(conn))
    outcome = "ok"
    try:
        if service.handle_async is not None:
            reader, writer = await asyncio.open_connection(sock=conn)
            try:
                await asyncio.wait_for(service.handle_async(reader, writer, ctx), rt.ctx.session_timeout)
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except OSError:
                    pass
        else:
            conn.setblocking(True)
            try:
                await loop.run_in_executor(None, service.handle_blocking, conn, ctx)
            finally:
                conn.close()
    except (ConnectionError, TimeoutError):
        outcome = "reset"
    except Exception as exc:
        outcome = "error"
        rt.ctx.log.error("%s: handler failed for %s: %r", rt.config.name, ctx.peer_text, exc)
    finally:
        rt.finished(ctx, outcome)


def _shutdown(conn: socket.socket) -> None:
    """End a connection whose handler outlived the drain grace period."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
