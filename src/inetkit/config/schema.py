"""The validated, frozen form of a daemon configuration.

Readers (``toml.py``, ``inetd_conf.py``) produce these objects; nothing else in
inetkit looks at raw config text.  Every object remembers where it came from
(``source``: ``file:line`` or ``file: [services.NAME]``) so that later errors,
such as a port already in use, can still point at the line to fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Proto = Literal["tcp", "udp"]

#: Every server model inetkit knows, and the transport each one runs on.
TCP_MODELS = frozenset({"iterative", "fork", "exec", "exec-fd", "thread", "async"})
UDP_MODELS = frozenset({"datagram", "wait"})
EXEC_MODELS = frozenset({"exec", "exec-fd", "wait"})


@dataclass(frozen=True)
class Limits:
    """Per-service limits.  ``None`` means unlimited."""

    max_connections: int | None = None
    max_per_source: int | None = None
    #: new connections per second allowed from one source address (token bucket)
    rate_per_source: float | None = None
    rate_burst: int | None = None
    idle_timeout: float | None = 300.0
    #: most seconds one connection may last whatever it does: the guard against
    #: a slowloris client trickling bytes just often enough to dodge idle_timeout
    #: (matters most for the iterative model, where one client holds all others)
    session_timeout: float | None = None
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceConfig:
    """One listener and the way its connections are served."""

    name: str
    port: int
    proto: Proto
    model: str
    bind: str = "127.0.0.1"
    #: built-in service name (``services/registry.py``); None for exec models
    handler: str | None = None
    #: program argv for exec models; ``{fd}`` and ``{python}`` are substituted
    program: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    user: str | None = None
    group: str | None = None
    #: processes for the async model (SO_REUSEPORT), 1 = in the daemon itself
    workers: int = 1
    #: fork model: most children alive at once; thread model: pool size
    max_children: int = 256
    #: listen() backlog for TCP
    backlog: int = 1024
    source: str = "<built-in>"

    @property
    def key(self) -> str:
        """Unique identity inside a config: name plus transport."""
        return f"{self.name}/{self.proto}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict, used to hand a service to a worker process."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceConfig:
        data = dict(data)
        limits = data.pop("limits", {}) or {}
        limits = Limits(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in limits.items()})  # type: ignore[arg-type]
        data["program"] = tuple(data.get("program", ()))
        return cls(limits=limits, **data)


@dataclass(frozen=True)
class DaemonConfig:
    """A whole daemon: its services plus daemon-wide settings."""

    services: tuple[ServiceConfig, ...]
    source: str = "<built-in>"
    #: where the control socket lives (operations issue); None = no control socket
    control_socket: str | None = None
    log_format: Literal["plain", "json"] = "plain"
    #: seconds given to in-flight connections on SIGTERM before children are stopped
    grace: float = 10.0

    def with_bind(self, bind: str) -> DaemonConfig:
        """Every service rebound to ``bind`` (the ``--bind`` option)."""
        return dataclasses.replace(
            self, services=tuple(dataclasses.replace(s, bind=bind) for s in self.services)
        )

    def with_any_port(self) -> DaemonConfig:
        """Every service on an OS-chosen port (``--any-port``, for tests and demos)."""
        return dataclasses.replace(
            self, services=tuple(dataclasses.replace(s, port=0) for s in self.services)
        )
