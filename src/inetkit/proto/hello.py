"""The hello exchanges as sans-IO cores: seed 002 "basics" (TCP and UDP, port 8080
in the seed, 8081 here) and seed 000 §12-3 (UDP, port 9005).

002 basics, TCP and UDP alike: the client sends ``Hello from client`` (no NUL,
no newline: ``send(sock, hello, strlen(hello), 0)``), the server reads one
message and answers ``Hello from server`` (no NUL either).  There is no framing
at all, so over TCP a message ends at the first of:

- a NUL or LF byte (a client that terminates its text),
- EOF,
- the bytes so far spell exactly the expected ``Hello from client``
  (reassembled however many segments it arrives in),
- the bytes so far are *not* a prefix of the expected message: then, like the
  seed's single ``read``, whatever has arrived is the message,
- the cap (1024 bytes, the seed's buffer).

§12-3: the client sends ``I am a client`` plus NUL in one datagram; the server
prints the text up to the NUL and answers ``Hello Client`` plus NUL.
"""

from __future__ import annotations

from collections.abc import Callable

from inetkit.services.base import StreamSession

#: 002 basics
CLIENT_HELLO = b"Hello from client"
SERVER_HELLO = b"Hello from server"
#: §12-3
UDP_CLIENT_MESSAGE = b"I am a client\x00"
UDP_SERVER_REPLY = b"Hello Client\x00"
#: the seed server's ``read(new_socket, buffer, 1024)``
HELLO_CAP = 1024
#: the §12-3 server's ``recvfrom(sd, buf, 255, ...)``
UDP_HELLO_CAP = 255

_TERMINATORS = (b"\x00", b"\n")


def datagram_text(data: bytes, cap: int = UDP_HELLO_CAP) -> str:
    """What the §12-3 server prints for a datagram: its first ``cap`` bytes up
    to the first NUL, as text (invalid UTF-8 shown as U+FFFD)."""
    return data[:cap].split(b"\x00", 1)[0].decode("utf-8", "replace")


def message_text(data: bytes) -> str:
    """A hello message for logs and terminals: up to the first NUL, one
    trailing CR/LF dropped."""
    text = data.split(b"\x00", 1)[0]
    if text.endswith(b"\n"):
        text = text[:-1]
    if text.endswith(b"\r"):
        text = text[:-1]
    return text.decode("utf-8", "replace")


class HelloMessageReader:
    """Delimits one unframed hello message on a stream (rules in the module doc)."""

    def __init__(self, expected: bytes = CLIENT_HELLO, cap: int = HELLO_CAP) -> None:
        self.expected = expected
        self.cap = cap
        self._buf = bytearray()
        self.message: bytes | None = None

    def feed(self, data: bytes) -> bytes | None:
        if self.message is not None:
            return None
        self._buf += data
        buf = bytes(self._buf)
        ends = [buf.index(t) + 1 for t in _TERMINATORS if t in buf]
        if ends:
            return self._finish(buf[: min(ends)])
        if len(buf) >= self.cap:
            return self._finish(buf[: self.cap])
        if self.expected and buf.startswith(self.expected):
            return self._finish(buf)
        if not self.expected.startswith(buf):
            # not the message we know: treat this read as the whole message, as the seed does
            return self._finish(buf)
        return None

    def eof(self) -> bytes | None:
        if self.message is not None or not self._buf:
            return None
        return self._finish(bytes(self._buf))

    def _finish(self, message: bytes) -> bytes:
        self.message = message
        self._buf.clear()
        return message


class HelloServerSession(StreamSession):
    """Server role over TCP: read one message, answer ``reply``, close.

    ``on_message`` gets the message bytes (None if the client sent nothing).
    A client that closes before its message is complete still gets the reply
    when it only half-closed; a reset just ends the session.
    """

    def __init__(
        self,
        reply: bytes = SERVER_HELLO,
        on_message: Callable[[bytes | None], None] | None = None,
        expected: bytes = CLIENT_HELLO,
        cap: int = HELLO_CAP,
    ) -> None:
        self.reply = reply
        self.reader = HelloMessageReader(expected, cap)
        self.on_message = on_message
        self.result: bytes | None = None

    def receive(self, data: bytes) -> bytes:
        message = self.reader.feed(data)
        if message is None:
            return b""
        return self._answer(message)

    def receive_eof(self) -> bytes:
        self.closing = True
        message = self.reader.eof()
        if message is None:
            if self.on_message is not None and self.result is None:
                self.on_message(None)
            return b""
        return self._answer(message)

    def _answer(self, message: bytes) -> bytes:
        self.result = message
        self.closing = True
        if self.on_message is not None:
            self.on_message(message)
        return self.reply
