"""Opening listening sockets the way a super-server needs them."""

from __future__ import annotations

import socket

from inetkit.config.schema import ServiceConfig


def family_for(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def open_listener(
    bind: str,
    port: int,
    proto: str,
    *,
    backlog: int = 1024,
    reuseport: bool = False,
) -> socket.socket:
    """A bound (and for TCP, listening) non-blocking socket.

    ``::`` is bound dual-stack (IPV6_V6ONLY off) so one listener takes IPv4
    and IPv6 clients.  SO_REUSEADDR lets a restarted daemon rebind at once;
    SO_REUSEPORT is only set for async workers sharing one port.
    Raises OSError (EADDRINUSE, EACCES...) for the caller to report.
    """
    family = family_for(bind)
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if bind in ("::", "") else 1)
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bind, port))
        if proto == "tcp":
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_service_listeners(service: ServiceConfig) -> list[socket.socket]:
    """One socket per worker: ``workers`` > 1 binds that many SO_REUSEPORT
    sockets on the same port so the kernel spreads connections over them."""
    if service.workers <= 1:
        return [open_listener(service.bind, service.port, service.proto, backlog=service.backlog)]
    first = open_listener(service.bind, service.port, service.proto, backlog=service.backlog, reuseport=True)
    sockets = [first]
    try:
        port = first.getsockname()[1]
        for _ in range(service.workers - 1):
            sockets.append(open_listener(service.bind, port, service.proto, backlog=service.backlog, reuseport=True))
    except BaseException:
        for s in sockets:
            s.close()
        raise
    return sockets
