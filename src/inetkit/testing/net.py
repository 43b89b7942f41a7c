"""Small blocking socket helpers for tests and benchmarks (always with timeouts)."""

from __future__ import annotations

import socket

DEFAULT_TIMEOUT = 10.0


def connect(address: tuple[str, int], timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    return sock


def recv_all(sock: socket.socket, limit: int = 1 << 26) -> bytes:
    """Read until EOF (bounded by ``limit``)."""
    chunks = []
    total = 0
    while total < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """recvn(): exactly ``n`` bytes or EOFError."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def udp_request(address: tuple[str, int], payload: bytes, timeout: float = 2.0, bufsize: int = 65535) -> bytes:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, address)
        data, _ = sock.recvfrom(bufsize)
        return data
