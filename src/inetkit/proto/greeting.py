"""The chapter's greeting exchange (seed 000 §12-2-1, §12-2-2, §12-2-4) as a sans-IO core.

Wire contract, as the seed C programs put it on the wire:

1. on accept the server sends its message followed by one NUL byte
   (``send(ns, buf, strlen(buf)+1, 0)``), e.g. ``welcome to network server!!!\\0``;
2. the client sends one C string.  The seed client sends ``sizeof(buf)+1`` = 257
   bytes: ``I want a HTTP service``, its NUL, then padding (stack garbage in the
   seed, zeros here);
3. the server prints the text up to the first NUL and closes.

The seeds rely on one ``recv`` per message.  TCP does not promise that, so both
roles here read *until a NUL byte, EOF or a cap*: a message split across
segments is reassembled, and a peer that never sends a NUL cannot make us
buffer without bound.  No sockets and no clock live here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inetkit.errors import LocalProtocolError
from inetkit.services.base import StreamSession

#: §12-2-1 iterative server's greeting (003 has two ``!``; the text is an option)
ITERATIVE_GREETING = "welcome to network server!!!"
#: §12-2-2 fork server's greeting
FORK_GREETING = "welcome to server"
#: §12-2-4 "bit"'s greeting
BIT_GREETING = "welcome to server, from bit"
#: §12-2-3 "han" writes this with printf: no NUL, no newline, then exits
HAN_GREETING = "welcome to server, from han!"
#: what the §12-2-1/§12-2-2 client answers
HTTP_REQUEST = "I want a HTTP service"
#: what the §12-2-4 client answers
TELNET_REQUEST = "I want a Telnet service"
#: the seed client sends ``sizeof(buf)+1`` bytes with ``char buf[256]``
SEED_MESSAGE_SIZE = 257
#: the most a greeting or a client message may take before its NUL
DEFAULT_CAP = 1024

NUL = b"\x00"


def c_string(text: str | bytes) -> bytes:
    """``text`` as the seeds send it: its bytes and one terminating NUL.

    A NUL inside ``text`` would end the string early on the other side, so it
    is refused (LocalProtocolError) rather than sent.
    """
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if NUL in data:
        raise LocalProtocolError("a C string cannot contain a NUL byte")
    return data + NUL


def padded_message(text: str | bytes, size: int = SEED_MESSAGE_SIZE) -> bytes:
    """The seed client's request: ``text``, NUL, then zero padding up to ``size``.

    A text too long for ``size`` is sent whole with its NUL (never truncated).
    """
    data = c_string(text)
    return data + NUL * (size - len(data)) if len(data) < size else data


@dataclass(frozen=True)
class CMessage:
    """One C-string message read off a stream.

    ``terminated``: a NUL ended it (False: EOF or the cap did);
    ``truncated``: the cap was reached before any NUL (the text is the first
    ``cap`` bytes); ``extra``: bytes that had arrived after the NUL (padding).
    """

    text: bytes
    terminated: bool
    truncated: bool = False
    extra: int = 0

    def decoded(self) -> str:
        """The text for logs and terminals (invalid UTF-8 shown as U+FFFD)."""
        return self.text.decode("utf-8", "replace")


class CStringReader:
    """Collects one NUL-terminated message across any number of chunks.

    ``feed`` returns the CMessage once a NUL arrives or more than ``cap`` bytes
    are held without one (the text is then the first ``cap`` bytes); ``eof`` returns what was held when the stream ends first
    (None when nothing at all arrived).  After a message is returned, further
    input only counts towards ``extra``.
    """

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        if cap < 1:
            raise LocalProtocolError("cap must be at least 1 byte")
        self.cap = cap
        self._buf = bytearray()
        self.message: CMessage | None = None
        self.extra = 0

    @property
    def done(self) -> bool:
        return self.message is not None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> CMessage | None:
        if self.message is not None:
            self.extra += len(data)
            return None
        # search only the new bytes for the NUL: total work stays linear in input
        start = len(self._buf)
        self._buf += data
        nul = self._buf.find(NUL, start)
        if nul != -1 and nul <= self.cap:
            self.extra = len(self._buf) - nul - 1
            self.message = CMessage(bytes(self._buf[:nul]), True, False, self.extra)
        elif len(self._buf) > self.cap:
            self.extra = len(self._buf) - self.cap
            self.message = CMessage(bytes(self._buf[: self.cap]), False, True, self.extra)
        else:
            return None
        self._buf.clear()
        return self.message

    def eof(self) -> CMessage | None:
        if self.message is not None:
            return None
        if not self._buf:
            return None
        self.message = CMessage(bytes(self._buf), False)
        self._buf.clear()
        return self.message


class GreetingServerSession(StreamSession):
    """Server role: greet, read one C string, close.

    ``on_message`` is called once with the client's CMessage, or with None
    when the client closed without sending anything; the service layer logs it.
    """

    def __init__(
        self,
        greeting: str | bytes,
        on_message: Callable[[CMessage | None], None] | None = None,
        cap: int = DEFAULT_CAP,
    ) -> None:
        self.greeting = c_string(greeting)
        self.reader = CStringReader(cap)
        self.on_message = on_message
        self.result: CMessage | None = None
        self.reported = False

    def start(self) -> bytes:
        return self.greeting

    def receive(self, data: bytes) -> bytes:
        message = self.reader.feed(data)
        if message is not None:
            self._report(message)
            # like the seed server: done after one message; padding left unread
            self.closing = True
        return b""

    def receive_eof(self) -> bytes:
        self._report(self.reader.eof())
        self.closing = True
        return b""

    def _report(self, message: CMessage | None) -> None:
        if self.reported:
            return
        self.reported = True
        self.result = message
        if self.on_message is not None:
            self.on_message(message)
