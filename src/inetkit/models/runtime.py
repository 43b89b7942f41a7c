"""A running service: its context, its live connections, its counters.

The runtime is the ``ConnectionHooks`` every model calls: ``admit`` before a
connection is served (access rules and limits) and ``finished`` after it,
which writes the one log line per connection.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from inetkit.config.schema import ServiceConfig
from inetkit.services.base import ConnectionContext, Service, ServiceContext


@dataclass
class LiveConnection:
    peer: tuple[str, int]
    started: float
    pid: int | None = None


@dataclass
class Counters:
    accepted: int = 0
    refused: int = 0
    errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class AccessRules:
    """allow/deny CIDR lists: deny wins; a non-empty allow list admits only its members."""

    def __init__(self, allow: tuple[str, ...], deny: tuple[str, ...]) -> None:
        self.allow = [ipaddress.ip_network(a, strict=False) for a in allow]
        self.deny = [ipaddress.ip_network(d, strict=False) for d in deny]

    def permits(self, host: str) -> bool:
        if not self.allow and not self.deny:
            return True
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if any(addr in net for net in self.deny):
            return False
        return not self.allow or any(addr in net for net in self.allow)


@dataclass
class ServiceRuntime:
    config: ServiceConfig
    ctx: ServiceContext
    service: Service | None
    counters: Counters = field(default_factory=Counters)
    live: dict[int, LiveConnection] = field(default_factory=dict)
    per_source: dict[str, int] = field(default_factory=dict)
    connection_log: bool = True

    def __post_init__(self) -> None:
        self.rules = AccessRules(self.config.limits.allow, self.config.limits.deny)

    @classmethod
    def create(cls, config: ServiceConfig, service: Service | None, log: logging.Logger | None = None) -> ServiceRuntime:
        ctx = ServiceContext(
            name=config.name,
            model=config.model,
            proto=config.proto,
            log=log or logging.getLogger(f"inetkit.{config.name}"),
            idle_timeout=config.limits.idle_timeout,
        )
        return cls(config=config, ctx=ctx, service=service)

    # -- ConnectionHooks -------------------------------------------------------
    def admit(self, conn: ConnectionContext, pid: int | None = None) -> bool:
        limits = self.config.limits
        host = conn.peer[0]
        reason = None
        if not self.rules.permits(host):
            reason = "denied by access rules"
        elif limits.max_connections is not None and len(self.live) >= limits.max_connections:
            reason = "max_connections reached"
        elif limits.max_per_source is not None and self.per_source.get(host, 0) >= limits.max_per_source:
            reason = "max_per_source reached"
        if reason is not None:
            self.counters.refused += 1
            self.ctx.log.warning("%s: refused %s: %s", self.config.name, conn.peer_text, reason)
            return False
        self.counters.accepted += 1
        self.live[id(conn)] = LiveConnection(conn.peer, time.monotonic(), pid)
        self.per_source[host] = self.per_source.get(host, 0) + 1
        return True

    def set_pid(self, conn: ConnectionContext, pid: int) -> None:
        live = self.live.get(id(conn))
        if live is not None:
            live.pid = pid

    def finished(self, conn: ConnectionContext, outcome: str, *, log: bool = True) -> None:
        live = self.live.pop(id(conn), None)
        host = conn.peer[0]
        left = self.per_source.get(host, 1) - 1
        if left > 0:
            self.per_source[host] = left
        else:
            self.per_source.pop(host, None)
        self.counters.bytes_in += conn.bytes_in
        self.counters.bytes_out += conn.bytes_out
        if outcome not in ("ok", "timeout", "reset"):
            self.counters.errors += 1
        if self.connection_log and log:
            duration = time.monotonic() - live.started if live else 0.0
            pid = live.pid if live and live.pid else os.getpid()
            self.ctx.log.info(
                "%s %s %s pid=%d %.3fs in=%d out=%d %s",
                self.config.name, conn.peer_text, self.config.model, pid, duration,
                conn.bytes_in, conn.bytes_out, outcome,
                extra={"conn": {
                    "service": self.config.name, "peer": conn.peer_text, "model": self.config.model,
                    "pid": pid, "duration": round(duration, 6), "bytes_in": conn.bytes_in,
                    "bytes_out": conn.bytes_out, "outcome": outcome,
                }},
            )

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "name": self.config.name,
            "proto": self.config.proto,
            "model": self.config.model,
            "counters": self.counters.as_dict(),
            "connections": [
                {"peer": list(c.peer), "age": round(now - c.started, 3), "pid": c.pid}
                for c in self.live.values()
            ],
        }
