"""A running service: its context, its live connections, its counters.

The runtime is the ``ConnectionHooks`` every model calls: ``admit`` before a
connection is served (access rules and limits) and ``finished`` after it,
which writes the one log line per connection.

Refusals: a refused connection is closed at once (accept, then close), so the
offending client gets a clean EOF/RST and nobody else notices; it is counted
every time but logged once per burst (``inetkit.limits.RefusalLog``).

Worker processes (the ``fork`` model's accept/fork worker, ``async`` with
``workers`` > 1) run their own runtime; with ``events`` set it reports every
admission, child PID and finished connection as a JSON-able dict, which the
daemon replays on its own runtime (``apply_event``) so ``inetkit status``
sees their connections and child PIDs too.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from inetkit import logs as _logs
from inetkit.config.schema import ServiceConfig
from inetkit.limits import ConcurrencyLimiter, RefusalLog, SourceRateLimiter
from inetkit.logs import connection_log
from inetkit.services.base import ConnectionContext, Service, ServiceContext

#: outcomes that are not errors
CLEAN_OUTCOMES = frozenset({"ok", "timeout", "reset"})


@dataclass
class LiveConnection:
    peer: tuple[str, int]
    started: float
    pid: int | None = None
    #: the connection's context (live byte counts), when in this process
    ctx: ConnectionContext | None = None
    #: aborts the connection at once (used after the drain grace period)
    closer: Callable[[], None] | None = None


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
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # a v4 client of a dual-stack listener is a v4 client
        if any(addr.version == net.version and addr in net for net in self.deny):
            return False
        return not self.allow or any(addr.version == net.version and addr in net for net in self.allow)


@dataclass
class ServiceRuntime:
    config: ServiceConfig
    ctx: ServiceContext
    service: Service | None
    counters: Counters = field(default_factory=Counters)
    live: dict[Hashable, LiveConnection] = field(default_factory=dict)
    connection_log: bool = True
    #: set in worker processes: where admissions and finished connections are reported
    events: Callable[[dict[str, Any]], None] | None = None
    #: the exec models' looping guard (anything with ``status(now) -> dict``)
    looping: Any = None
    #: False once the service stopped accepting (removed or replaced by a reload,
    #: or the daemon is draining); its live connections still finish here
    accepting: bool = True

    def __post_init__(self) -> None:
        limits = self.config.limits
        self.rules = AccessRules(limits.allow, limits.deny)
        self.concurrency = ConcurrencyLimiter(limits.max_connections, limits.max_per_source)
        self.rate: SourceRateLimiter | None = (
            SourceRateLimiter(limits.rate_per_source, limits.rate_burst) if limits.rate_per_source else None
        )
        self.refusals = RefusalLog()
        self.owner_pid = os.getpid()
        self._instant_lines: _logs.InstantLines | None = None

    @classmethod
    def create(cls, config: ServiceConfig, service: Service | None, log: logging.Logger | None = None) -> ServiceRuntime:
        ctx = ServiceContext(
            name=config.name,
            model=config.model,
            proto=config.proto,
            log=log or logging.getLogger(f"inetkit.{config.name}"),
            idle_timeout=config.limits.idle_timeout,
            session_timeout=config.limits.session_timeout,
        )
        return cls(config=config, ctx=ctx, service=service)

    @property
    def per_source(self) -> dict[str, int]:
        return self.concurrency.per_source

    # -- admission ---------------------------------------------------------------
    def check(self, host: str, now: float) -> str | None:
        """Why a new connection from ``host`` is refused, or None to admit it.
        Takes a rate token when it admits."""
        if not self.rules.permits(host):
            return "denied by access rules"
        reason = self.concurrency.check(host)
        if reason is not None:
            return reason
        if self.rate is not None:
            wait = self.rate.acquire(host, now)
            if wait:
                return f"rate_per_source exceeded (next allowed in {wait:.2f}s)"
        return None

    def refuse(self, peer_text: str, host: str, reason: str, now: float) -> None:
        """Count a refusal; log it only if it opens a new burst for this source."""
        self.counters.refused += 1
        if self.events is not None:
            self.events({"ev": "refused"})
        # the wait time varies per refusal: bursts are keyed by the reason's kind
        kind = reason.split(" (", 1)[0]
        previous = self.refusals.refused(host, kind, now)
        if previous is not None:
            more = f"; {previous} more refused since its last line" if previous else ""
            self.ctx.log.warning("%s: refused %s: %s (logged once per burst%s)",
                                 self.config.name, peer_text, reason, more)

    def admit(self, conn: ConnectionContext, pid: int | None = None) -> bool:
        """Check ``conn`` against the access rules and limits; if it may go
        on, count it and hold it among the live connections (``finished``
        lets it go)."""
        if not self.admit_instant(conn, pid):
            return False
        self.hold(conn, pid)
        return True

    def admit_instant(self, conn: ConnectionContext, pid: int | None = None) -> bool:
        """``admit`` for a connection served whole before the event loop runs
        again (``models/instant.py``): checked against the rules and limits
        and counted, but not held among the live connections, which nothing
        could see it in (and it never overlaps another, so it never counts
        towards max_connections).  If it has to outlive that moment after
        all, ``hold`` it.  ``finished`` ends both kinds."""
        host = conn.peer[0]
        now = time.monotonic()
        reason = self.check(host, now)
        if reason is not None:
            self.refuse(conn.peer_text, host, reason, now)
            return False
        self.counters.accepted += 1
        if self.events is not None:
            self.events({"ev": "open", "id": id(conn), "peer": list(conn.peer), "pid": pid})
        return True

    def hold(self, conn: ConnectionContext, pid: int | None = None) -> None:
        """Count an admitted connection among the live ones (limits, status, drain)."""
        self.live[id(conn)] = LiveConnection(conn.peer, time.monotonic(), pid, conn)
        self.concurrency.acquire(conn.peer[0])

    def admit_datagram(self, conn: ConnectionContext) -> bool:
        """Access rules and per-source rate for one UDP datagram (no concurrency)."""
        host = conn.peer[0]
        now = time.monotonic()
        reason = None
        if not self.rules.permits(host):
            reason = "denied by access rules"
        elif self.rate is not None:
            wait = self.rate.acquire(host, now)
            if wait:
                reason = f"rate_per_source exceeded (next allowed in {wait:.2f}s)"
        if reason is not None:
            self.refuse(conn.peer_text, host, reason, now)
            return False
        self.counters.accepted += 1
        return True

    def set_pid(self, conn: ConnectionContext, pid: int) -> None:
        live = self.live.get(id(conn))
        if live is not None:
            live.pid = pid
        if self.events is not None:
            self.events({"ev": "pid", "id": id(conn), "pid": pid})

    def set_closer(self, conn: ConnectionContext, closer: Callable[[], None]) -> None:
        live = self.live.get(id(conn))
        if live is not None:
            live.closer = closer

    # -- the end of a connection -----------------------------------------------
    def _release(self, conn: ConnectionContext) -> LiveConnection | None:
        live = self.live.pop(id(conn), None)
        if live is not None:
            self.concurrency.release(conn.peer[0])
        return live

    def finished(self, conn: ConnectionContext, outcome: str, *, log: bool = True) -> None:
        # the hottest path of a short-connection service: kept flat on purpose
        live = self.live.pop(id(conn), None)
        if live is not None:
            self.concurrency.release(conn.peer[0])
        counters = self.counters
        counters.bytes_in += conn.bytes_in
        counters.bytes_out += conn.bytes_out
        if outcome not in CLEAN_OUTCOMES:
            counters.errors += 1
        if self.events is not None:
            self.events({"ev": "close", "id": id(conn), "in": conn.bytes_in, "out": conn.bytes_out,
                         "outcome": outcome})
        if self.connection_log and log:
            fast = _logs._connection_log
            if fast is not None:  # the line's text is made when the batch is written
                if live is not None:
                    fast.queue(self.config.name, conn.peer, self.config.model, live.pid,
                               time.monotonic() - live.started, conn.bytes_in, conn.bytes_out, outcome)
                else:  # served whole in one callback (admit_instant)
                    self.instant_lines(fast).add(conn.peer, conn.bytes_in, conn.bytes_out, outcome)
            else:
                duration = time.monotonic() - live.started if live is not None else 0.0
                pid = live.pid if live is not None and live.pid else os.getpid()
                self._log_line(conn.peer_text, pid, duration, conn.bytes_in, conn.bytes_out, outcome)

    def instant_lines(self, log: _logs.ConnectionLog) -> _logs.InstantLines:
        """This service's writer of instant connections' lines into ``log``."""
        lines = self._instant_lines
        if lines is None or lines.log is not log:
            lines = self._instant_lines = log.instant_lines(self.config.name, self.config.model)
        return lines

    def reaped(self, conn: ConnectionContext, outcome: str, *, log: bool) -> None:
        """The fork worker reaped the child serving ``conn``.  The child itself
        reported its bytes and wrote the log line, unless it died (``log``)."""
        live = self._release(conn)
        if self.events is not None:
            self.events({"ev": "reap", "id": id(conn), "outcome": outcome})
        if log:
            if outcome not in CLEAN_OUTCOMES:
                self.counters.errors += 1
            if self.connection_log:
                duration = time.monotonic() - live.started if live else 0.0
                pid = live.pid if live and live.pid else 0
                self._log_line(conn.peer_text, pid, duration, 0, 0, outcome)

    def _log_line(self, peer: str, pid: int, duration: float, bytes_in: int, bytes_out: int, outcome: str) -> None:
        fast = connection_log()
        if fast is not None:
            fast.write(self.config.name, peer, self.config.model, pid, duration, bytes_in, bytes_out, outcome)
            return
        self.ctx.log.info(
            "%s %s %s pid=%d %.3fs in=%d out=%d %s",
            self.config.name, peer, self.config.model, pid, duration, bytes_in, bytes_out, outcome,
            extra={"conn": {
                "service": self.config.name, "peer": peer, "model": self.config.model,
                "pid": pid, "duration": round(duration, 6), "bytes_in": bytes_in,
                "bytes_out": bytes_out, "outcome": outcome,
            }},
        )

    # -- the daemon side of a worker's events ------------------------------------
    def apply_event(self, worker: int, event: dict[str, Any]) -> None:
        """Replay one event reported by worker process ``worker`` (see module doc)."""
        kind = event.get("ev")
        key = (worker, event.get("id"))
        if kind == "open":
            peer = event.get("peer") or ["", 0]
            self.counters.accepted += 1
            self.live[key] = LiveConnection((str(peer[0]), int(peer[1])), time.monotonic(), event.get("pid"))
        elif kind == "pid":
            live = self.live.get(key)
            if live is not None:
                live.pid = event.get("pid")
        elif kind == "refused":
            self.counters.refused += 1
        elif kind == "close":
            self.live.pop(key, None)
            self.counters.bytes_in += int(event.get("in", 0))
            self.counters.bytes_out += int(event.get("out", 0))
            if event.get("outcome") not in CLEAN_OUTCOMES:
                self.counters.errors += 1
        elif kind == "reap":
            # a child that reported its own close is already gone; one that
            # died without doing so is an error
            if self.live.pop(key, None) is not None and event.get("outcome") not in CLEAN_OUTCOMES:
                self.counters.errors += 1

    def forget_worker(self, worker: int) -> None:
        """A worker exited: whatever it still had open is gone with it."""
        for key in [k for k in self.live if isinstance(k, tuple) and k[0] == worker]:
            del self.live[key]

    # -- status ------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        connections = []
        for c in self.live.values():
            row: dict[str, Any] = {"peer": list(c.peer), "age": round(now - c.started, 3), "pid": c.pid}
            if c.ctx is not None:
                row["bytes_in"] = c.ctx.bytes_in
                row["bytes_out"] = c.ctx.bytes_out
            connections.append(row)
        limits = self.config.limits
        return {
            "name": self.config.name,
            "proto": self.config.proto,
            "model": self.config.model,
            "accepting": self.accepting,
            "counters": self.counters.as_dict(),
            "connections": connections,
            "looping": self.looping.status(now) if self.looping is not None else None,
            "limits": {k: (list(v) if isinstance(v, tuple) else v) for k, v in limits.__dict__.items()},
        }
