"""inetd's internal services: echo, discard, chargen, daytime, time, TCP and UDP.

Over UDP they never answer a source that could be spoofed for reflection
(port 0, broadcast, multicast; see ``is_reflection_risk``).
"""

from __future__ import annotations

import itertools
import time
from typing import Iterable

from inetkit.proto import internal as core
from inetkit.services.base import (
    ConnectionContext,
    Service,
    StreamSession,
    is_reflection_risk,
)

_ALL_TCP = frozenset({"iterative", "fork", "thread", "async"})


class _Internal(Service):
    transports = frozenset({"tcp", "udp"})
    tcp_models = _ALL_TCP
    udp_models = frozenset({"datagram"})


class EchoService(_Internal):
    name = "echo"
    summary = "RFC 862 echo: every byte sent back"

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        return core.EchoSession()

    def handle_datagram(self, data: bytes, ctx: ConnectionContext) -> Iterable[bytes]:
        if is_reflection_risk(ctx.peer):
            return ()
        return (data,)


class DiscardService(_Internal):
    name = "discard"
    summary = "RFC 863 discard: reads and drops everything"

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        return core.DiscardSession()


class ChargenService(_Internal):
    name = "chargen"
    summary = "RFC 864 character generator (flow controlled)"

    def __init__(self, options: dict | None = None, where: str = "options") -> None:
        super().__init__(options, where)
        self._counter = itertools.count()

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        return core.ChargenSession()

    def handle_datagram(self, data: bytes, ctx: ConnectionContext) -> Iterable[bytes]:
        if is_reflection_risk(ctx.peer):
            return ()
        return (core.chargen_datagram(next(self._counter)),)


class DaytimeService(_Internal):
    name = "daytime"
    summary = "RFC 867 daytime: the date and time as text"
    instant_reply = True
    instant_reply_per_second = True

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        return core.OneShotSession(core.daytime_text(time.time()))

    def handle_datagram(self, data: bytes, ctx: ConnectionContext) -> Iterable[bytes]:
        if is_reflection_risk(ctx.peer):
            return ()
        return (core.daytime_text(time.time()),)


class TimeService(_Internal):
    name = "time"
    summary = "RFC 868 time: seconds since 1900 as 32 bits"
    instant_reply = True
    instant_reply_per_second = True

    def open_session(self, ctx: ConnectionContext) -> StreamSession:
        return core.OneShotSession(core.time_bytes(time.time()))

    def handle_datagram(self, data: bytes, ctx: ConnectionContext) -> Iterable[bytes]:
        if is_reflection_risk(ctx.peer):
            return ()
        return (core.time_bytes(time.time()),)
