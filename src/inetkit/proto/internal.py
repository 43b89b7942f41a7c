"""The classic inetd internal services as sans-IO sessions.

echo (RFC 862), discard (RFC 863), chargen (RFC 864), daytime (RFC 867) and
time (RFC 868).  The clock is an argument: the service layer passes ``now``.
"""

from __future__ import annotations

import struct
import time as _time

from inetkit.services.base import StreamSession

#: seconds between 1900-01-01 (RFC 868's epoch) and 1970-01-01
RFC868_EPOCH_OFFSET = 2_208_988_800


class EchoSession(StreamSession):
    """RFC 862: send back every byte received, unchanged."""

    def receive(self, data: bytes) -> bytes:
        return data


class DiscardSession(StreamSession):
    """RFC 863: read and throw away."""


def _chargen_cycle() -> bytes:
    """The 95 lines of the RFC 864 pattern: 72 printable characters from a
    rotating start, CRLF-terminated.  The stream is this block repeated."""
    printable = bytes(range(32, 127))
    doubled = printable + printable
    return b"".join(doubled[i : i + 72] + b"\r\n" for i in range(len(printable)))


CHARGEN_CYCLE = _chargen_cycle()
CHARGEN_LINE = 74


class ChargenSession(StreamSession):
    """RFC 864 over TCP: an endless pattern, produced only when the socket can
    take more (the driver calls ``produce``), so nothing piles up in memory."""

    producing = True

    def __init__(self) -> None:
        self.offset = 0
        # the cycle repeated enough times that any budget up to 64 KiB is one slice
        self._window = CHARGEN_CYCLE * (1 + 65536 // len(CHARGEN_CYCLE) + 1)

    def produce(self, budget: int) -> bytes:
        budget = max(1, min(budget, 65536))
        start = self.offset
        self.offset = (start + budget) % len(CHARGEN_CYCLE)
        return self._window[start : start + budget]


def chargen_datagram(counter: int) -> bytes:
    """RFC 864 over UDP: one line of the pattern per request (kept small so
    the service amplifies as little as possible)."""
    line = counter % (len(CHARGEN_CYCLE) // CHARGEN_LINE)
    return CHARGEN_CYCLE[line * CHARGEN_LINE : (line + 1) * CHARGEN_LINE]


def daytime_text(now: float) -> bytes:
    """RFC 867 leaves the format free; this is inetd's ctime() form, in UTC.
    The text changes once a second, so the last one is kept (a busy daytime
    service would otherwise format the same line thousands of times)."""
    global _daytime_cache
    second = int(now)
    if _daytime_cache[0] != second:
        # the C locale's names, spelled out here rather than by strftime(): the
        # text must not depend on LC_TIME, and a forked child that would call
        # strftime first pays for faulting in libc's locale machinery
        t = _time.gmtime(second)
        text = b"%s %s %02d %02d:%02d:%02d %d\r\n" % (
            _DAYS[t.tm_wday], _MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, t.tm_year)
        _daytime_cache = (second, text)
    return _daytime_cache[1]


_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")  # tm_wday: Monday is 0
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_daytime_cache: tuple[int, bytes] = (-1, b"")


def time_bytes(now: float) -> bytes:
    """RFC 868: seconds since 1900 as an unsigned 32-bit big-endian number
    (wraps in 2036, as the RFC's format does)."""
    return struct.pack("!I", (int(now) + RFC868_EPOCH_OFFSET) & 0xFFFFFFFF)


class OneShotSession(StreamSession):
    """Send a fixed reply on connect and close (daytime, time)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def start(self) -> bytes:
        self.closing = True
        return self.reply
