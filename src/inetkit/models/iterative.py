"""The ``iterative`` model (seed 12-2-1): one connection at a time.

The *service* is iterative: the next client waits in the listen backlog until
the current one is done.  The *daemon* is not: this runs as one task in the
daemon's event loop, so other services keep serving meanwhile.
"""

from __future__ import annotations

import socket

from inetkit.models.accept import accept_loop
from inetkit.models.runtime import ServiceRuntime
from inetkit.models.streams import run_connection


async def serve(listener: socket.socket, rt: ServiceRuntime) -> None:
    async def handle(conn: socket.socket) -> None:
        await run_connection(conn, rt)

    await accept_loop(listener, rt, handle, concurrency=1)
