"""A UDP request/reply exchange with timeout and retries (seed 000 §12-3, 002 basics).

UDP may drop either datagram, so the request is sent again when no reply
comes within ``timeout``, up to ``retries`` more times.  The socket is
connected: the kernel then delivers only the server's datagrams, and an ICMP
port unreachable surfaces as a refusal instead of a silent timeout.
"""

from __future__ import annotations

import socket

from inetkit.clients.simple import DEFAULT_TIMEOUT, ClientError, describe, translate

MAX_DATAGRAM = 65535


def udp_exchange(address: tuple[str, int], payload: bytes, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 2) -> tuple[bytes, int]:
    """Send ``payload``, return ``(reply, attempts)``; ClientError when every try timed out."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise translate(exc, address, "opening a socket for") from None
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            raise translate(exc, address, "addressing") from None
        for attempt in range(1, retries + 2):
            try:
                sock.send(payload)
                return sock.recv(MAX_DATAGRAM), attempt
            except TimeoutError:
                continue
            except OSError as exc:
                raise translate(exc, address, "exchanging datagrams with") from None
    raise ClientError(f"no reply from {describe(address)} after {retries + 1} tries of {timeout:g}s", "timeout")
