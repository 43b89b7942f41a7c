"""The lecture 004 echo client's exchange: send a chunk, read back exactly as
many bytes (``recvn``), so a reply split across segments is still whole."""

from __future__ import annotations

import socket

from inetkit.clients.simple import (
    DEFAULT_TIMEOUT,
    ClientError,
    describe,
    open_tcp,
    translate,
)


def recvn(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes; fewer only when the peer closed (the caller checks)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 65536))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


class EchoClient:
    """One connection to an echo service; ``exchange`` is one send + recvn."""

    def __init__(self, address: tuple[str, int], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self.sock = open_tcp(address, timeout)

    def exchange(self, data: bytes) -> bytes:
        """Send ``data`` and return the same number of bytes read back.
        ClientError (kind ``short``) if the server closes before all came back."""
        try:
            self.sock.sendall(data)
            reply = recvn(self.sock, len(data))
        except OSError as exc:
            raise translate(exc, self.address, "exchanging data with") from None
        if len(reply) < len(data):
            raise ClientError(
                f"short reply: {describe(self.address)} closed after {len(reply)} of {len(data)} bytes", "short")
        return reply

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> EchoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
