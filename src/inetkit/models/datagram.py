"""The UDP ``datagram`` model: handlers run in the daemon's event loop.

Simple services answer each datagram (``handle_datagram``); services with
sockets and timers of their own (TFTP) take the bound socket (``serve_udp``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from inetkit.io.addresses import plain_address
from inetkit.models.runtime import ServiceRuntime
from inetkit.services.base import OWN_DATAGRAM_PORTS, ConnectionContext


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt
        self.transport: asyncio.DatagramTransport | None = None
        self.local = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop transports are not asyncio subclasses
        self.local = plain_address(transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        rt = self.rt
        assert rt.service is not None and self.transport is not None
        ctx = ConnectionContext(rt.ctx, plain_address(addr), self.local, bytes_in=len(data))
        if not rt.admit_datagram(ctx):  # access rules and per-source rate
            return
        rt.counters.bytes_in += len(data)
        try:
            for reply in rt.service.handle_datagram(data, ctx):
                self.transport.sendto(reply, addr)
                rt.counters.bytes_out += len(reply)
        except Exception as exc:  # one bad datagram never stops the service
            rt.counters.errors += 1
            rt.ctx.log.info("%s: datagram from %s rejected: %s", rt.config.name, ctx.peer_text, exc)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a gone client: nothing to do
        pass


async def serve(sock: socket.socket, rt: ServiceRuntime) -> None:
    service = rt.service
    assert service is not None
    # registered while served: no in-process UDP service answers a datagram
    # "from" another one's port (loop requests, see is_reflection_risk)
    port = sock.getsockname()[1]
    OWN_DATAGRAM_PORTS[port] = OWN_DATAGRAM_PORTS.get(port, 0) + 1
    try:
        if service.serve_udp is not None:
            rt.ctx.admit_request = rt.admit_datagram  # allow/deny and rate apply to its requests too
            await service.serve_udp(sock, rt.ctx)
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _DatagramProtocol(rt), sock=sock)
        try:
            await asyncio.Future()  # until cancelled
        finally:
            transport.close()
    finally:
        left = OWN_DATAGRAM_PORTS.get(port, 1) - 1
        if left > 0:
            OWN_DATAGRAM_PORTS[port] = left
        else:
            OWN_DATAGRAM_PORTS.pop(port, None)
