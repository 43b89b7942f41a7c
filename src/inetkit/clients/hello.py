"""Client role of the 002 "basics" hello exchange, over TCP or UDP.

TCP: send ``Hello from client`` (no NUL, as the seed's ``strlen``), then read
the reply with the same delimiting rules the server uses
(``inetkit.proto.hello.HelloMessageReader``, expecting ``Hello from server``),
so a reply split across segments is reassembled and EOF also ends it.
"""

from __future__ import annotations

from collections.abc import Callable

from inetkit.clients.simple import (
    DEFAULT_TIMEOUT,
    ClientError,
    describe,
    open_tcp,
    translate,
)
from inetkit.clients.udp import udp_exchange
from inetkit.proto.hello import (
    CLIENT_HELLO,
    HELLO_CAP,
    SERVER_HELLO,
    HelloMessageReader,
)


def hello_tcp(address: tuple[str, int], message: bytes = CLIENT_HELLO, *, timeout: float = DEFAULT_TIMEOUT,
              expected: bytes = SERVER_HELLO, on_sent: Callable[[], None] | None = None) -> bytes:
    """Send ``message``, return the server's one reply; ClientError on failure.
    ``on_sent`` runs once the message is sent (the seed prints then)."""
    with open_tcp(address, timeout) as sock:
        try:
            sock.sendall(message)
        except OSError as exc:
            raise translate(exc, address, "sending to") from None
        if on_sent is not None:
            on_sent()
        reader = HelloMessageReader(expected, HELLO_CAP)
        while True:
            try:
                data = sock.recv(HELLO_CAP)
            except OSError as exc:
                raise translate(exc, address, "waiting for the reply from") from None
            reply = reader.feed(data) if data else reader.eof()
            if reply is not None:
                return reply
            if not data:
                raise ClientError(f"{describe(address)} closed the connection without a reply", "short")


def hello_udp(address: tuple[str, int], message: bytes = CLIENT_HELLO, *, timeout: float = DEFAULT_TIMEOUT,
              retries: int = 2) -> bytes:
    reply, _ = udp_exchange(address, message, timeout=timeout, retries=retries)
    return reply
