"""Services written once over a byte channel and run by every TCP model.

``files`` and ``file-push`` move bytes with ``sendfile``/``recv_into`` on the
socket itself, which a sans-IO session cannot do.  They implement one
coroutine, ``serve(channel, ctx)``, against ``io.zerocopy``'s channel
interface; this base runs it over asyncio streams for the async model and
over a blocking socket (driven to completion without an event loop) for the
iterative, fork and thread models.
"""

from __future__ import annotations

import socket
from typing import Any

from inetkit.io.zerocopy import AsyncChannel, BlockingChannel, run_blocking
from inetkit.services.base import ConnectionContext, Service


class ChannelService(Service):
    async def serve(self, ch: Any, ctx: ConnectionContext) -> Any:
        """Serve one connection over ``ch`` (an AsyncChannel or BlockingChannel)."""
        raise NotImplementedError

    async def handle_async(self, reader: Any, writer: Any, ctx: ConnectionContext) -> None:
        channel = AsyncChannel(reader, writer, ctx.service.idle_timeout)
        try:
            await self.serve(channel, ctx)
        finally:
            channel.close()

    def handle_blocking(self, sock: socket.socket, ctx: ConnectionContext) -> None:
        run_blocking(self.serve(BlockingChannel(sock, ctx.service.idle_timeout), ctx))
