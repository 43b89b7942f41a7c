"""A worker process: one service, one model, on a listener inherited by fd.

Started by the daemon with ``subprocess`` (fork+exec, so it starts from a
fresh single-threaded interpreter) for the ``fork`` model and for ``async``
services with ``workers`` > 1.  Not meant to be run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inetkit.models.runtime import ServiceRuntime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inetkit-worker")
    parser.add_argument("--model", choices=("fork", "async"), required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--spec", required=True, help="the ServiceConfig as JSON")
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--events", type=int, help="fd of the daemon's events pipe (JSON lines, for status)")
    parser.add_argument("--no-connection-log", action="store_true")
    args = parser.parse_args(argv)

    from inetkit.config.schema import ServiceConfig
    from inetkit.logs import setup_logging
    from inetkit.models.runtime import ServiceRuntime
    from inetkit.services.registry import create_service

    setup_logging()
    config = ServiceConfig.from_json(json.loads(args.spec))
    listener = socket.socket(fileno=args.fd)
    service = create_service(config.handler or config.name, config.options, config.source)
    rt = ServiceRuntime.create(config, service)
    rt.connection_log = not args.no_connection_log
    if args.events is not None:
        from inetkit.models.forking import write_events

        rt.events = write_events(args.events)
    if args.model == "fork":
        from inetkit.models.forking import run_forking

        return run_forking(listener, rt, args.grace)
    return _run_async(listener, rt, args.grace)


def _run_async(listener: socket.socket, rt: ServiceRuntime, grace: float = 10.0) -> int:
    """Serve until SIGTERM/SIGINT, then drain like the daemon does: stop
    accepting, give live connections ``grace`` seconds, abort the rest."""
    from inetkit.io.aio import new_event_loop
    from inetkit.models import aio

    loop = new_event_loop()
    asyncio.set_event_loop(loop)

    async def serve_then_drain() -> None:
        serving = asyncio.ensure_future(aio.serve(listener, rt))
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
        serving.cancel()
        stopped.cancel()
        await asyncio.gather(serving, stopped, return_exceptions=True)
        deadline = loop.time() + grace
        while rt.live and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for live in list(rt.live.values()):
            if live.closer is not None:
                live.closer()
        await asyncio.sleep(0)  # let aborted transports report connection_lost

    try:
        loop.run_until_complete(serve_then_drain())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
