"""The ``async`` model: asyncio (uvloop when installed) in the daemon itself,
or in ``workers`` processes that each own a SO_REUSEPORT socket on the port."""

from __future__ import annotations

import asyncio
import socket

from inetkit.io.addresses import plain_address
from inetkit.models.instant import serve_instant
from inetkit.models.runtime import ServiceRuntime
from inetkit.models.streams import has_session, protocol_factory
from inetkit.services.base import ConnectionContext


async def serve(listener: socket.socket, rt: ServiceRuntime) -> None:
    service = rt.service
    assert service is not None
    loop = asyncio.get_running_loop()
    if service.instant_reply and service.handle_async is None:
        await serve_instant(listener, rt)
        return
    if service.handle_async is None and has_session(service):
        server = await loop.create_server(protocol_factory(rt), sock=listener, backlog=rt.config.backlog)
    else:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ctx = ConnectionContext(
                rt.ctx,
                plain_address(writer.get_extra_info("peername")),
                plain_address(writer.get_extra_info("sockname")),
            )
            if not rt.admit(ctx):
                writer.transport.abort()
                return
            rt.set_closer(ctx, writer.transport.abort)
            outcome = "ok"
            try:
                if service.handle_async is not None:
                    await asyncio.wait_for(service.handle_async(reader, writer, ctx), rt.ctx.session_timeout)
                else:
                    raise RuntimeError(f"service {rt.config.name!r} has no async handler")
            except (ConnectionError, asyncio.IncompleteReadError):
                outcome = "reset"
            except TimeoutError:
                outcome = "timeout"
            except Exception as exc:
                outcome = "error"
                rt.ctx.log.error("%s: handler failed for %s: %r", rt.config.name, ctx.peer_text, exc)
            finally:
                writer.close()
                rt.finished(ctx, outcome)

        server = await asyncio.start_server(on_client, sock=listener, backlog=rt.config.backlog, limit=65536)
    try:
        await server.serve_forever()
    finally:
        server.close()
