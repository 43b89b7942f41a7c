"""An asyncio accept loop with bounded concurrency and EMFILE back-off."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Awaitable, Callable

from inetkit.models.runtime import ServiceRuntime

#: accept() errors that mean "out of resources for now": wait and retry
TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: handler tasks still running; kept referenced so they are not collected
_IN_FLIGHT: set[asyncio.Task[None]] = set()

#: errors about one aborted connection: skip it
PER_CONNECTION = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET}


async def accept_loop(
    listener: socket.socket,
    rt: ServiceRuntime,
    handle: Callable[[socket.socket], Awaitable[None]],
    *,
    concurrency: int,
) -> None:
    """Accept connections and run ``handle`` on each, at most ``concurrency``
    at once; beyond that new clients wait in the kernel's backlog."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(concurrency)
    backoff = 0.01

    async def run(conn: socket.socket) -> None:
        try:
            await handle(conn)
        finally:
            slots.release()

    try:
        while True:
            await slots.acquire()
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:
                slots.release()
                if exc.errno in TRANSIENT:
                    rt.ctx.log.warning("%s: accept: %s; retrying in %.2fs", rt.config.name, exc.strerror, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                if exc.errno in PER_CONNECTION:
                    continue
                raise
            backoff = 0.01
            task = loop.create_task(run(conn))
            _IN_FLIGHT.add(task)
            task.add_done_callback(_IN_FLIGHT.discard)
    finally:
        # In-flight connections are not cancelled here: stopping the accept
        # loop means "accept no more"; the daemon drains them (grace period).
        pass
