"""Client role of the greeting exchange (seed 000 §12-2-1 .. §12-2-4).

Reads the server's greeting until NUL (or until EOF for "han", which sends
none), then sends the seed client's request: a C string zero-padded to 257
bytes (``send(sd, buf, sizeof(buf)+1, 0)`` in the seed), and closes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from inetkit.clients.simple import (
    DEFAULT_TIMEOUT,
    ClientError,
    describe,
    open_tcp,
    translate,
)
from inetkit.proto.greeting import DEFAULT_CAP, CMessage, CStringReader

_READ = 4096


@dataclass
class GreetResult:
    welcome: CMessage
    #: the bytes sent back (empty when the client only listened, as for "han")
    sent: bytes


def read_greeting(sock: socket.socket, address: tuple[str, int], *, until_eof: bool = False,
                  cap: int = DEFAULT_CAP) -> CMessage:
    """The server's greeting.  ``until_eof``: the text ends at EOF (han sends no
    NUL); otherwise a NUL must end it and EOF before it is a short reply."""
    reader = CStringReader(cap)
    while True:
        try:
            data = sock.recv(_READ)
        except OSError as exc:
            raise translate(exc, address, "reading the greeting from") from None
        if not data:
            message = reader.eof()
            if message is None:
                raise ClientError(f"{describe(address)} closed the connection without a greeting", "short")
            if not until_eof:
                raise ClientError(
                    f"short reply from {describe(address)}: {len(message.text)} bytes and no NUL before EOF", "short")
            return message
        message = reader.feed(data)
        if message is not None:
            if until_eof and message.truncated:
                return message
            if message.truncated:
                raise ClientError(f"{describe(address)} sent {cap} bytes without a NUL: not a greeting", "short")
            return message


def greet(
    address: tuple[str, int],
    request: bytes | None,
    *,
    until_eof: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    on_connect: Callable[[], None] | None = None,
    on_welcome: Callable[[CMessage], None] | None = None,
) -> GreetResult:
    """Connect, read the greeting, send ``request`` (None: send nothing), close.

    ``on_connect`` / ``on_welcome`` let a caller print or look around (the demo
    lists processes) at the moments the seed client prints.
    Raises ClientError on refusal, timeout, reset or a short greeting.
    """
    with open_tcp(address, timeout) as sock:
        if on_connect is not None:
            on_connect()
        welcome = read_greeting(sock, address, until_eof=until_eof)
        if on_welcome is not None:
            on_welcome(welcome)
        if request:
            try:
                sock.sendall(request)
            except OSError as exc:
                raise translate(exc, address, "sending the message to") from None
        return GreetResult(welcome, request or b"")
