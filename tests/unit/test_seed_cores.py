"""The seed chapter's sans-IO cores: greeting C strings (seed 000 §12-2) and hello
message delimiting (002 basics, 000 §12-3).  No sockets, no clock."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inetkit.errors import LocalProtocolError
from inetkit.proto import greeting as g
from inetkit.proto import hello as h
from inetkit.services.base import ConnectionContext, ServiceContext

SEED_REQUEST = g.padded_message(g.HTTP_REQUEST)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


# -- greeting: the bytes --------------------------------------------------------------


def test_seed_request_is_257_bytes_text_nul_then_zero_padding() -> None:
    assert len(SEED_REQUEST) == 257
    assert SEED_REQUEST.startswith(b"I want a HTTP service\x00")
    assert SEED_REQUEST[22:] == b"\x00" * 235


def test_c_string_appends_one_nul_and_refuses_embedded_nul() -> None:
    assert g.c_string("welcome to network server!!!") == b"welcome to network server!!!\x00"
    assert g.c_string(b"") == b"\x00"
    with pytest.raises(LocalProtocolError):
        g.c_string("a\x00b")


def test_padded_message_never_truncates_a_long_text() -> None:
    text = "x" * 300
    assert g.padded_message(text) == text.encode() + b"\x00"
    assert g.padded_message("ab", 3) == b"ab\x00"
    assert g.padded_message("ab", 5) == b"ab\x00\x00\x00"


# -- greeting: the reader -------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=12))
def test_any_segmentation_of_the_seed_request_gives_the_same_message(cuts: list[int]) -> None:
    reader = g.CStringReader()
    results = [m for chunk in split_at(SEED_REQUEST, cuts) if (m := reader.feed(chunk)) is not None]
    assert results == [g.CMessage(b"I want a HTTP service", True, False, results[0].extra)]
    # everything after the NUL is counted as padding, in whichever chunk it came
    assert reader.extra == 257 - 22


def test_reader_byte_by_byte() -> None:
    reader = g.CStringReader()
    out = [reader.feed(bytes([b])) for b in b"hi\x00pad"]
    assert out[:2] == [None, None]
    assert out[2] == g.CMessage(b"hi", True, False, 0)
    assert out[3:] == [None, None, None]
    assert reader.extra == 3


def test_reader_cap_cuts_a_message_without_nul_and_says_so() -> None:
    reader = g.CStringReader(cap=8)
    assert reader.feed(b"12345678") is None  # exactly cap bytes: a NUL may still come
    message = reader.feed(b"9abc")
    assert message == g.CMessage(b"12345678", False, True, 4)


def test_reader_accepts_a_text_of_exactly_cap_bytes() -> None:
    reader = g.CStringReader(cap=4)
    assert reader.feed(b"abcd\x00") == g.CMessage(b"abcd", True, False, 0)


def test_reader_eof_returns_partial_text_or_none() -> None:
    reader = g.CStringReader()
    reader.feed(b"no nul here")
    assert reader.eof() == g.CMessage(b"no nul here", False)
    assert g.CStringReader().eof() is None


def test_reader_rejects_a_zero_cap() -> None:
    with pytest.raises(LocalProtocolError):
        g.CStringReader(0)


def test_decoded_replaces_invalid_utf8() -> None:
    assert g.CMessage(b"caf\xe9", True).decoded() == "caf\ufffd"


# -- greeting: the server session -----------------------------------------------------


def test_server_session_greets_reads_one_message_and_closes() -> None:
    seen: list[g.CMessage | None] = []
    session = g.GreetingServerSession("welcome to server", seen.append)
    assert session.start() == b"welcome to server\x00"
    for chunk in (SEED_REQUEST[:5], SEED_REQUEST[5:30], SEED_REQUEST[30:]):
        assert session.receive(chunk) == b""
        if session.closing:
            break
    assert session.closing
    assert seen == [g.CMessage(b"I want a HTTP service", True, False, seen[0].extra)]


def test_server_session_reports_a_silent_client_once() -> None:
    seen: list[g.CMessage | None] = []
    session = g.GreetingServerSession("hi", seen.append)
    session.start()
    session.receive_eof()
    session.receive_eof()
    assert session.closing and seen == [None]


def test_server_session_caps_a_flood_without_nul() -> None:
    seen: list[g.CMessage | None] = []
    session = g.GreetingServerSession("hi", seen.append, cap=16)
    session.receive(b"A" * 100_000)
    assert session.closing
    assert seen[0] is not None and seen[0].truncated and seen[0].text == b"A" * 16


# -- hello ------------------------------------------------------------------------------


@pytest.mark.parametrize("cuts", [[], [1], [5, 10], list(range(1, 17))])
def test_hello_reader_reassembles_the_expected_message(cuts: list[int]) -> None:
    reader = h.HelloMessageReader()
    chunks = split_at(h.CLIENT_HELLO, cuts)
    results = [reader.feed(c) for c in chunks]
    assert results[:-1] == [None] * (len(chunks) - 1)
    assert results[-1] == b"Hello from client"


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"Hi there", b"Hi there"),  # not a prefix of the known message: one read is the message
        (b"Hello\n", b"Hello\n"),  # a terminator ends it
        (b"Hello\x00rest", b"Hello\x00"),
        (b"Hello from client, and more", b"Hello from client, and more"),
    ],
)
def test_hello_reader_other_messages(data: bytes, expected: bytes) -> None:
    assert h.HelloMessageReader().feed(data) == expected


def test_hello_reader_waits_on_a_prefix_and_eof_ends_it() -> None:
    reader = h.HelloMessageReader()
    assert reader.feed(b"Hello fr") is None
    assert reader.eof() == b"Hello fr"
    assert h.HelloMessageReader().eof() is None


def test_hello_reader_cap() -> None:
    reader = h.HelloMessageReader(expected=b"x" * 2000, cap=1024)
    assert reader.feed(b"x" * 1000) is None
    assert reader.feed(b"x" * 100) == b"x" * 1024


def test_hello_server_session_replies_without_nul_and_closes() -> None:
    seen: list[bytes | None] = []
    session = h.HelloServerSession(on_message=seen.append)
    assert session.start() == b""
    assert session.receive(b"Hello from") == b""
    assert session.receive(b" client") == b"Hello from server"
    assert session.closing and seen == [b"Hello from client"]


def test_hello_server_session_answers_a_half_closed_partial_message() -> None:
    session = h.HelloServerSession()
    session.receive(b"Hello")
    assert session.receive_eof() == b"Hello from server"
    silent = h.HelloServerSession()
    assert silent.receive_eof() == b"" and silent.closing


def test_text_helpers() -> None:
    assert h.datagram_text(b"I am a client\x00junk") == "I am a client"
    assert h.datagram_text(b"x" * 300) == "x" * 255
    assert h.message_text(b"Hello from client\r\n") == "Hello from client"
    assert h.message_text(b"a\x00b") == "a"


# -- the services' datagram policy (no sockets needed) --------------------------------


def _ctx(name: str, peer: tuple[str, int]) -> ConnectionContext:
    return ConnectionContext(ServiceContext(name, "datagram", "udp", logging.getLogger(f"inetkit.test.{name}")), peer,
                             ("127.0.0.1", 9005))


@pytest.mark.parametrize("peer", [("127.0.0.1", 0), ("255.255.255.255", 5000), ("224.0.0.1", 5000), ("10.0.0.255", 68)])
def test_udp_services_drop_reflection_risk_sources(peer: tuple[str, int]) -> None:
    from inetkit.services.hello import HelloService, UdpHelloService

    assert list(UdpHelloService().handle_datagram(b"I am a client\x00", _ctx("udp-hello", peer))) == []
    assert list(HelloService().handle_datagram(b"Hello from client", _ctx("hello", peer))) == []


def test_udp_services_answer_ordinary_sources(caplog: pytest.LogCaptureFixture) -> None:
    from inetkit.services.hello import HelloService, UdpHelloService

    caplog.set_level(logging.INFO, "inetkit.test")
    peer = ("127.0.0.1", 40000)
    assert list(UdpHelloService().handle_datagram(b"I am a client\x00", _ctx("udp-hello", peer))) == [b"Hello Client\x00"]
    assert list(HelloService().handle_datagram(b"Hello from client", _ctx("hello", peer))) == [b"Hello from server"]
    assert "From client: I am a client" in caplog.text
    assert "Message from client: Hello from client" in caplog.text


def test_greeting_options_are_checked() -> None:
    from inetkit.errors import ConfigError
    from inetkit.services.greeting import GreetingService

    assert GreetingService({"linger": 2}).options.linger == 2.0
    for bad in ({"linger": -1}, {"message": "a\x00b"}, {"max_message": 0}, {"greeting": "x"}):
        with pytest.raises(ConfigError):
            GreetingService(bad)
