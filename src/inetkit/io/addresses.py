"""Address helpers: v4-mapped IPv6 peers shown as plain IPv4, host:port parsing."""

from __future__ import annotations

from typing import Any


def plain_address(addr: Any) -> tuple[str, int]:
    """``('::ffff:127.0.0.1', 5, 0, 0)`` -> ``('127.0.0.1', 5)``; other forms kept."""
    if not isinstance(addr, tuple) or len(addr) < 2:
        return (str(addr), 0)
    host, port = addr[0], addr[1]
    if isinstance(host, str) and host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return (host, int(port))


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``host``, ``host:port``, ``[v6]:port`` or a bare ``v6`` address."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        if rest:
            raise ValueError(f"bad address {text!r}")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            raise ValueError(f"bad port in {text!r}")
        return host, int(port)
    else:
        host = text
    if default_port is None:
        raise ValueError(f"{text!r} has no port")
    return host, default_port
