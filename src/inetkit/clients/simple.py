"""What the seed clients (greet, udp, hello, echo) share: one error type that
says *why* an exchange failed, and a connect that turns OSErrors into it.

``ClientError.kind`` is one of ``refused`` (nothing listening / ICMP port
unreachable), ``timeout`` (no answer in time), ``short`` (the peer closed
before a whole reply arrived) or ``io`` (any other socket error); the
command layer maps each to an exit code.
"""

from __future__ import annotations

import socket

DEFAULT_TIMEOUT = 5.0


class ClientError(Exception):
    """An exchange with a server failed; ``kind`` says how (see module doc)."""

    def __init__(self, message: str, kind: str = "io") -> None:
        self.kind = kind
        super().__init__(message)


def describe(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def translate(exc: OSError, address: tuple[str, int], doing: str) -> ClientError:
    """A ClientError for an OSError raised while ``doing`` something with ``address``."""
    where = describe(address)
    if isinstance(exc, ConnectionRefusedError):
        return ClientError(f"{where} refused the connection (is the service running?)", "refused")
    if isinstance(exc, TimeoutError):
        return ClientError(f"timed out {doing} {where}", "timeout")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return ClientError(f"{where} reset the connection while {doing}", "short")
    return ClientError(f"{doing} {where} failed: {exc.strerror or exc}", "io")


def open_tcp(address: tuple[str, int], timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    """A connected TCP socket with ``timeout`` on every operation."""
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        raise translate(exc, address, "connecting to") from None
    sock.settimeout(timeout)
    return sock
