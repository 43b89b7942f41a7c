"""The inetd internal services' sans-IO cores (RFC 862-868), no sockets."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inetkit.proto import internal as core
from inetkit.services.base import is_reflection_risk


def test_echo_and_discard() -> None:
    echo = core.EchoSession()
    assert echo.start() == b"" and echo.receive(b"abc\x00\xff") == b"abc\x00\xff"
    echo.receive_eof()
    assert echo.closing
    assert core.DiscardSession().receive(b"x" * 1000) == b""


def test_chargen_stream_is_the_rfc864_pattern_under_any_budget() -> None:
    session = core.ChargenSession()
    produced = b"".join(session.produce(n) for n in (1, 73, 74, 5000, 65536, 3, 70000))
    lines = produced.split(b"\r\n")
    first = lines[0]
    assert first == bytes(range(32, 104))  # 72 characters starting at space
    for i, line in enumerate(lines[:-1]):
        start = 32 + i % 95
        expected = bytes((start - 32 + k) % 95 + 32 for k in range(72))
        assert line == expected
    assert len(session.produce(10**9)) == 65536  # never more than one bounded chunk


def test_chargen_datagram_is_one_line() -> None:
    assert core.chargen_datagram(0) == core.CHARGEN_CYCLE[:74]
    assert core.chargen_datagram(95) == core.chargen_datagram(0)
    assert core.chargen_datagram(1).startswith(b"!\"#")


def test_daytime_and_time_use_the_given_clock() -> None:
    assert core.daytime_text(0) == b"Thu Jan 01 00:00:00 1970\r\n"
    assert core.daytime_text(1_700_000_000) == b"Tue Nov 14 22:13:20 2023\r\n"
    assert core.time_bytes(0) == struct.pack("!I", 2_208_988_800)
    assert struct.unpack("!I", core.time_bytes(1_700_000_000))[0] == 1_700_000_000 + 2_208_988_800
    # 2036-02-07 06:28:16 UTC is where RFC 868's 32-bit counter wraps
    assert core.time_bytes(2_085_978_496) == b"\x00\x00\x00\x00"


def test_oneshot_closes_after_reply() -> None:
    session = core.OneShotSession(b"hi")
    assert session.start() == b"hi" and session.closing


@pytest.mark.parametrize(
    ("peer", "risky"),
    [
        (("127.0.0.1", 5000), False),
        (("::1", 5000), False),
        (("127.0.0.1", 0), True),
        (("255.255.255.255", 7), True),
        (("192.0.2.255", 7), True),
        (("224.0.0.1", 7), True),
        (("ff02::1", 7), True),
        (("0.0.0.0", 7), True),
        (("not-an-address", 7), True),
    ],
)
def test_reflection_risky_sources(peer: tuple[str, int], risky: bool) -> None:
    assert is_reflection_risk(peer) is risky


@given(st.integers(min_value=0, max_value=2**34))
def test_daytime_text_spells_what_strftime_does_in_the_c_locale(second: int) -> None:
    core._daytime_cache = (-1, b"")  # each example formats afresh
    expected = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(second)).encode("ascii") + b"\r\n"
    assert core.daytime_text(second + 0.5) == expected
