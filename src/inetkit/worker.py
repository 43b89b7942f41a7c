"""A worker process: one service, one model, on a listener inherited by fd.

Started by the daemon with ``subprocess`` (fork+exec, so it starts from a
fresh single-threaded interpreter) for the ``fork`` model and for ``async``
services with ``workers`` > 1.  Not meant to be run by hand.

This module is the worker's ``__main__`` and imports nothing heavy at its
top: the ``fork`` worker's memory is copied (page tables, then page by page)
into every child it forks, so it must not load asyncio, subprocess or
argparse it never uses (``models/forkworker.py`` says why and how much).
The arguments are a fixed internal format written by
``models.forking.worker_command``, parsed by hand for the same reason.
"""

from __future__ import annotations

import os
import sys

# A lean fork worker (``python -S``, see ``models.forking.lean_worker_environment``)
# takes the daemon's module path before it imports anything else.  (Names
# written out: importing ``inetkit.models.forking`` here would load asyncio.)
_lean_path = os.environ.pop("INETKIT_WORKER_SYS_PATH", None)
if _lean_path is not None:
    sys.path[:] = _lean_path.split(os.pathsep)
    _previous = os.environ.pop("INETKIT_WORKER_PYTHONPATH", None)
    if _previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = _previous

import json  # noqa: E402 - after the path is set
import socket  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    from inetkit.models.runtime import ServiceRuntime

USAGE = ("usage: inetkit-worker --model {fork,async} --fd N --spec JSON [--grace SECONDS] "
         "[--events FD] [--no-connection-log]")


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> dict[str, Any]:
    """The worker's arguments (see ``USAGE``) as a dict; UsageError names the problem."""
    args: dict[str, Any] = {"grace": 10.0, "events": None, "connection_log": True}
    it = iter(argv)
    for arg in it:
        if arg == "--no-connection-log":
            args["connection_log"] = False
            continue
        if arg not in ("--model", "--fd", "--spec", "--grace", "--events"):
            raise UsageError(f"unknown argument {arg!r}")
        value = next(it, None)
        if value is None:
            raise UsageError(f"{arg} needs a value")
        key = arg[2:]
        try:
            args[key] = {"fd": int, "events": int, "grace": float}.get(key, str)(value)
        except ValueError:
            raise UsageError(f"{arg}: bad value {value!r}") from None
    for required in ("model", "fd", "spec"):
        if required not in args:
            raise UsageError(f"--{required} is required")
    if args["model"] not in ("fork", "async"):
        raise UsageError(f"--model: {args['model']!r} is not fork or async")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"{USAGE}\ninetkit-worker: error: {exc}", file=sys.stderr)
        return 2

    if args["model"] == "fork":
        # first, before anything that might register an at-fork hook is imported
        from inetkit.models import forkhooks

        forkhooks.install()

    from inetkit.config.schema import ServiceConfig
    from inetkit.services.registry import create_service

    config = ServiceConfig.from_json(json.loads(args["spec"]))
    listener = socket.socket(fileno=args["fd"])
    if args["model"] == "fork":
        from inetkit.models import forkworker

        forkworker.setup_worker_logging()
        service = create_service(config.handler or config.name, config.options, config.source)
        return forkworker.serve(listener, config, service, events_fd=args["events"], grace=args["grace"],
                                connection_log=args["connection_log"])

    from inetkit.logs import setup_logging
    from inetkit.models.runtime import ServiceRuntime

    setup_logging()
    service = create_service(config.handler or config.name, config.options, config.source)
    rt = ServiceRuntime.create(config, service)
    rt.connection_log = args["connection_log"]
    if args["events"] is not None:
        from inetkit.models.forking import write_events

        rt.events = write_events(args["events"])
    return _run_async(listener, rt, args["grace"])


def _run_async(listener: socket.socket, rt: ServiceRuntime, grace: float = 10.0) -> int:
    """Serve until SIGTERM/SIGINT, then drain like the daemon does: stop
    accepting, give live connections ``grace`` seconds, abort the rest."""
    import asyncio
    import gc
    import signal

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

    gc.freeze()  # as the daemon does once ready (supervisor.serve_forever): short collections
    try:
        loop.run_until_complete(serve_then_drain())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
