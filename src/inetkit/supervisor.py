"""inetd proper: bind every configured service, run each under its model,
stop cleanly.

Order matters: the config is validated and every handler built *before* any
socket is bound, so a bad config starts nothing.  Binding then happens per
service: a port already in use is reported for that service and the others
still start, unless ``strict`` makes any such failure fatal.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from inetkit.config.schema import EXEC_MODELS, DaemonConfig, ServiceConfig
from inetkit.config.validate import validate_config
from inetkit.errors import InetkitError
from inetkit.models import MODEL_MODULES
from inetkit.models.runtime import ServiceRuntime
from inetkit.services.base import Service

log = logging.getLogger("inetkit.daemon")


class BindError(InetkitError):
    """A service could not be bound and the daemon runs with ``strict``."""


@dataclass
class BoundService:
    config: ServiceConfig
    runtime: ServiceRuntime
    sockets: list[socket.socket] = field(default_factory=list)
    error: str | None = None
    task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self.sockets:
            host, port = self.sockets[0].getsockname()[:2]
            return host, port
        return self.config.bind, self.config.port

    def describe(self) -> dict[str, Any]:
        host, port = self.address
        return {"name": self.config.name, "proto": self.config.proto, "address": host, "port": port,
                "model": self.config.model, "error": self.error}


def build_runtime(config: ServiceConfig) -> ServiceRuntime:
    service: Service | None = None
    if config.model not in EXEC_MODELS:
        from inetkit.services.registry import create_service

        service = create_service(config.handler or config.name, config.options, config.source)
    return ServiceRuntime.create(config, service)


class Supervisor:
    def __init__(self, config: DaemonConfig, *, strict: bool = False, connection_log: bool = True) -> None:
        self.config = config
        self.strict = strict
        self.connection_log = connection_log
        self.services: list[BoundService] = []
        self.started = time.time()

    # -- binding ---------------------------------------------------------------
    def bind_all(self) -> list[BoundService]:
        """Validate, build every handler, then bind.  Raises ConfigError for a
        bad config (nothing bound) and BindError in strict mode."""
        validate_config(self.config)
        prepared = []
        for cfg in self.config.services:
            rt = build_runtime(cfg)
            rt.connection_log = self.connection_log
            prepared.append(BoundService(cfg, rt))
        from inetkit.io.listeners import open_service_listeners

        for bound in prepared:
            try:
                bound.sockets = open_service_listeners(bound.config)
            except OSError as exc:
                bound.error = f"{exc.strerror or exc} (errno {exc.errno})"
                if self.strict:
                    for other in prepared:
                        for sock in other.sockets:
                            sock.close()
                    raise BindError(
                        f"{bound.config.source}: cannot bind {bound.config.key} to "
                        f"{bound.config.bind}:{bound.config.port}: {bound.error}"
                    ) from None
                log.error("%s: cannot bind %s:%d/%s: %s", bound.config.name, bound.config.bind,
                          bound.config.port, bound.config.proto, bound.error)
        self.services = prepared
        return prepared

    # -- running ---------------------------------------------------------------
    async def _run_model(self, bound: BoundService) -> None:
        cfg, rt = bound.config, bound.runtime
        backoff = 0.5
        while True:
            try:
                if cfg.model == "async" and cfg.workers > 1:
                    from inetkit.models.forking import supervise_worker

                    # return_exceptions: on cancel, wait for every worker to be stopped
                    # (plain gather returns at the first cancelled child)
                    await asyncio.gather(
                        *(supervise_worker(s, rt, "async", self.config.grace, i) for i, s in enumerate(bound.sockets)),
                        return_exceptions=True,
                    )
                else:
                    module = importlib.import_module(MODEL_MODULES[cfg.model])
                    await module.serve(bound.sockets[0], rt)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a model crash must not take the daemon down
                log.error("%s: model %s failed: %r; restarting in %.1fs", cfg.name, cfg.model, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for bound in self.services:
            if bound.sockets and bound.task is None:
                bound.task = loop.create_task(self._run_model(bound), name=f"serve-{bound.config.key}")

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let live connections finish within ``grace``, then
        terminate what is left (exec'd children included)."""
        grace = self.config.grace if grace is None else grace
        tasks = [b.task for b in self.services if b.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bound in self.services:
            for sock in bound.sockets:
                sock.close()
        deadline = time.monotonic() + grace
        while any(b.runtime.live for b in self.services) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for bound in self.services:
            for live in bound.runtime.live.values():
                if live.pid and live.pid != os.getpid():
                    try:
                        os.killpg(live.pid, signal.SIGTERM)
                    except OSError:
                        pass
        # children just signalled are reaped by their handlers' pidfd watchers;
        # give them a moment, then reap whatever a cancelled wait left behind
        deadline = time.monotonic() + 2.0
        while any(live.pid for b in self.services for live in b.runtime.live.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        from inetkit.models.forkexec import reap_orphans

        await reap_orphans(grace=2.0)
        for bound in self.services:
            if bound.runtime.service is not None:
                try:
                    await bound.runtime.service.aclose()
                except Exception as exc:
                    log.error("%s: error while closing: %r", bound.config.name, exc)

    async def run(self, stop: asyncio.Event, on_ready: Callable[[list[BoundService]], None] | None = None) -> None:
        """Serve until ``stop`` is set (bind_all must have been called)."""
        self.start()
        if on_ready is not None:
            on_ready(self.services)
        await stop.wait()
        await self.stop()

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 3),
            "services": [dict(b.describe(), **b.runtime.status(), stats=dict(b.runtime.ctx.stats))
                         for b in self.services],
        }


def serve_forever(
    supervisor: Supervisor,
    on_ready: Callable[[list[BoundService]], None] | None = None,
    *,
    install_signals: bool = True,
) -> int:
    """Serve a bound supervisor until SIGTERM/SIGINT, then drain.  Exit status."""
    from inetkit.io.aio import new_event_loop

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(supervisor.run(stop, on_ready))
    finally:
        loop.close()
    return 0
