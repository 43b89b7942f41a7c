"""FX1 headers and state machines (inetkit.proto.filexfer), pure."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inetkit.errors import LocalProtocolError
from inetkit.proto import filexfer as fx

DIGEST = hashlib.sha256(b"hello").hexdigest()


# -- requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        fx.ListRequest(),
        fx.GetRequest("a.txt", 0),
        fx.GetRequest("dir/with space/ünï©ode.bin", 12345),
        fx.GetRequest("a.txt", 7, "blake3"),
        fx.PutRequest("x", 0, DIGEST),
        fx.PutRequest("deep/" * 10 + "f", fx.MAX_NUMBER, DIGEST),
    ],
)
def test_request_round_trip(request_: fx.Request) -> None:
    wire = request_.encode()
    assert wire.endswith(b"\n") and len(wire) <= fx.MAX_LINE
    fields = {fx.ListRequest: 2, fx.GetRequest: 4, fx.PutRequest: 5}[type(request_)]
    if isinstance(request_, fx.GetRequest) and request_.check == "blake3":
        fields += 1  # the optional digest field
    assert len(wire.rstrip(b"\n").split(b" ")) == fields  # names never carry a space
    assert fx.parse_request(wire) == request_


def test_names_are_percent_encoded_on_the_wire() -> None:
    wire = fx.GetRequest("a b%c", 7).encode()
    assert wire == b"FX1 GET a%20b%25c 7\n"


@pytest.mark.parametrize(
    "line, code",
    [
        (b"FX1 GET a 01\n", 400),  # leading zero
        (b"FX1 GET a -1\n", 400),
        (b"FX1 GET a 1\r\n", 400),  # CR is not allowed
        (b"FX1  GET a 1\n", 400),  # double space
        (b"FX1 GET a 1 \n", 400),  # trailing space
        (b"FX1 GET a 1", 400),  # no LF
        (b"FX2 LIST\n", 400),
        (b"FX1 list\n", 400),
        (b"FX1 LIST extra\n", 400),
        (b"FX1 GET a\n", 400),
        (b"FX1 GET a 0 sha256\n", 400),  # SHA-256 is never asked for: it always comes
        (b"FX1 GET a 0 BLAKE3\n", 400),
        (b"FX1 GET a 0 blake3 x\n", 400),
        (b"FX1 PUT a 1 " + DIGEST.upper().encode() + b"\n", 400),  # digest must be lowercase
        (b"FX1 PUT a 1 abc\n", 400),
        (b"FX1 GET a 9223372036854775808\n", 400),  # 2**63
        (b"FX1 GET a 99999999999999999999\n", 400),
        (b"FX1 GET a%zz 0\n", 400),
        (b"FX1 GET a%ff 0\n", 400),  # not UTF-8
        (b"FX1 GET a%00b 0\n", 400),  # NUL
        (b"FX1 GET a%5cb 0\n", 400),  # backslash
        (b"FX1 GET a\xff 0\n", 400),
        (b"FX1 GET ../etc/passwd 0\n", 403),
        (b"FX1 GET %2e%2e/etc/passwd 0\n", 403),
        (b"FX1 GET a/../../b 0\n", 403),
        (b"FX1 GET /etc/passwd 0\n", 403),
        (b"FX1 GET %2fetc%2fpasswd 0\n", 403),
        (b"FX1 GET a//b 0\n", 400),
        (b"FX1 GET ./a 0\n", 400),
        (b"FX1 GET .inetkit-partial/x.part 0\n", 403),
        (b"FX1 GET " + b"a" * 1025 + b" 0\n", 400),
        (b"FX1 GET " + b"a/" * 40 + b"b 0\n", 400),
        (b"FX1 " + b"A" * fx.MAX_LINE + b"\n", 400),
        (b"\n", 400),
    ],
)
def test_malformed_requests_are_refused_with_a_code(line: bytes, code: int) -> None:
    with pytest.raises(fx.FilexferError) as info:
        fx.parse_request(line)
    assert info.value.status == code
    assert info.value.reason


def test_encoding_refuses_bad_names_locally() -> None:
    for name in ("", "../x", "/abs", "a//b", "a\x00b", ".inetkit-partial/p"):
        with pytest.raises(LocalProtocolError):
            fx.GetRequest(name).encode()
    with pytest.raises(LocalProtocolError):
        fx.PutRequest("a", -1, DIGEST).encode()
    with pytest.raises(LocalProtocolError):
        fx.PutRequest("a", 1, "nothex").encode()


# -- replies ---------------------------------------------------------------------------


def test_error_lines_are_one_sanitised_line() -> None:
    line = fx.encode_error(404, "no such\nfile\x00 " + "x" * 500)
    assert line.startswith(b"ERR 404 no such?file? x")
    assert line.count(b"\n") == 1 and len(line) <= 4 + 4 + fx.MAX_REASON + 1
    with pytest.raises(fx.FilexferError) as info:
        fx.parse_reply(fx.encode_error(507, "insufficient storage"), "READY")
    assert info.value.remote and info.value.status == 507 and info.value.reason == "insufficient storage"
    with pytest.raises(LocalProtocolError):
        fx.encode_error(42, "x")


@pytest.mark.parametrize(
    "line, expect",
    [
        (b"FILE 10\n", "FILE"),
        (b"READY 1 2\n", "READY"),
        (b"DONE 1 " + DIGEST.encode() + b"\n", "FILE"),
        (b"ERR 4x bad\n", "FILE"),
        (b"ERR 404\n", "FILE"),
        (b"LIST 100001\n", "LIST"),
    ],
)
def test_malformed_replies(line: bytes, expect: str) -> None:
    with pytest.raises(fx.FilexferError) as info:
        fx.parse_reply(line, expect)
    assert not info.value.remote


def test_line_buffer_is_bounded_and_keeps_the_rest() -> None:
    buf = fx.LineBuffer(16)
    assert buf.feed(b"FILE 3 ") is None
    assert buf.feed(b"x\nabc") == b"FILE 3 x\n"
    assert buf.take_rest() == b"abc"
    with pytest.raises(fx.FilexferError):
        fx.LineBuffer(16).feed(b"x" * 16)


# -- state machines --------------------------------------------------------------------


def test_client_get_counts_the_body() -> None:
    core = fx.ClientTransfer(fx.GetRequest("f", 4))
    assert core.start() == b"FX1 GET f 4\n"
    header = core.handle_line(b"FILE 10 " + DIGEST.encode() + b"\n")
    assert header == fx.FileHeader(10, DIGEST)
    assert core.state is fx.State.BODY and core.body_remaining == 6
    core.body_received(5)
    with pytest.raises(fx.FilexferError):
        core.body_eof()  # one byte missing
    core2 = fx.ClientTransfer(fx.GetRequest("f", 0))
    core2.start()
    core2.handle_line(b"FILE 2 " + DIGEST.encode() + b"\n")
    with pytest.raises(fx.FilexferError):
        core2.body_received(3)  # more than announced


B3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"  # BLAKE3 of b""


def test_get_asking_for_blake3_gets_both_digests() -> None:
    server = fx.ServerTransfer()
    request = server.handle_line(b"FX1 GET f 0 blake3\n")
    assert request == fx.GetRequest("f", 0, "blake3")
    with pytest.raises(LocalProtocolError):
        server.file(10, DIGEST)  # asked for BLAKE3: the server must announce it
    line = server.file(10, DIGEST, B3)
    assert line == b"FILE 10 %s %s\n" % (DIGEST.encode(), B3.encode())
    client = fx.ClientTransfer(fx.GetRequest("f", 0, "blake3"))
    assert client.start() == b"FX1 GET f 0 blake3\n"
    assert client.handle_line(line) == fx.FileHeader(10, DIGEST, B3)
    assert client.body_remaining == 10


def test_the_file_line_must_carry_exactly_the_digests_asked_for() -> None:
    plain = fx.ServerTransfer()
    plain.handle_line(b"FX1 GET f 0\n")
    with pytest.raises(LocalProtocolError):
        plain.file(10, DIGEST, B3)  # nobody asked for it
    # an older server ignoring the request (or a server volunteering a BLAKE3) is a protocol error
    asked = fx.ClientTransfer(fx.GetRequest("f", 0, "blake3"))
    asked.start()
    with pytest.raises(fx.FilexferError):
        asked.handle_line(b"FILE 10 " + DIGEST.encode() + b"\n")
    assert asked.state is fx.State.FAILED
    unasked = fx.ClientTransfer(fx.GetRequest("f", 0))
    unasked.start()
    with pytest.raises(fx.FilexferError):
        unasked.handle_line(b"FILE 10 %s %s\n" % (DIGEST.encode(), B3.encode()))
    with pytest.raises(fx.FilexferError):
        fx.parse_reply(b"FILE 10 %s %s\n" % (DIGEST.encode(), B3.upper().encode()), "FILE")
    with pytest.raises(LocalProtocolError):
        fx.GetRequest("f", 0, "md5").encode()


def test_client_get_offset_beyond_size_is_an_error() -> None:
    core = fx.ClientTransfer(fx.GetRequest("f", 11))
    core.start()
    with pytest.raises(fx.FilexferError):
        core.handle_line(b"FILE 10 " + DIGEST.encode() + b"\n")
    assert core.state is fx.State.FAILED


def test_client_put_flow_and_done_check() -> None:
    core = fx.ClientTransfer(fx.PutRequest("f", 10, DIGEST))
    core.start()
    assert core.handle_line(b"READY 7\n") == fx.Ready(7)
    core.body_sent(3)
    assert core.state is fx.State.AWAIT_DONE
    with pytest.raises(fx.FilexferError):
        core.handle_line(b"DONE 10 " + hashlib.sha256(b"other").hexdigest().encode() + b"\n")


def test_zero_byte_get_and_put_have_no_body_state() -> None:
    get = fx.ClientTransfer(fx.GetRequest("e"))
    get.start()
    get.handle_line(b"FILE 0 " + hashlib.sha256().hexdigest().encode() + b"\n")
    assert get.state is fx.State.DONE
    get.body_eof()
    put = fx.ClientTransfer(fx.PutRequest("e", 0, hashlib.sha256().hexdigest()))
    put.start()
    put.handle_line(b"READY 0\n")
    assert put.state is fx.State.AWAIT_DONE


def test_calls_in_the_wrong_state_are_local_errors() -> None:
    core = fx.ClientTransfer(fx.ListRequest())
    with pytest.raises(LocalProtocolError):
        core.body_received(1)
    server = fx.ServerTransfer()
    with pytest.raises(LocalProtocolError):
        server.file(1, DIGEST)
    server.handle_line(b"FX1 GET f 5\n")
    with pytest.raises(LocalProtocolError):
        server.file(4, DIGEST)  # offset beyond: the service must answer 416
    with pytest.raises(LocalProtocolError):
        server.ready(0)
    server.file(5, DIGEST)
    assert server.state is fx.State.DONE
    with pytest.raises(LocalProtocolError):
        server.error(500, "too late")


def test_server_put_refuses_a_wrong_digest_at_done() -> None:
    server = fx.ServerTransfer()
    server.handle_line(fx.PutRequest("f", 2, DIGEST).encode())
    assert server.ready(1) == b"READY 1\n"
    with pytest.raises(LocalProtocolError):
        server.body_received(2)
    server.body_received(1)
    with pytest.raises(LocalProtocolError):
        server.done(hashlib.sha256(b"x").hexdigest())
    assert server.error(422, "mismatch") == b"ERR 422 mismatch\n"


# -- property tests: the parsers never fail in an undocumented way ----------------------

_lines = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b + b"\n"),
    st.lists(st.sampled_from([b"FX1", b"GET", b"PUT", b"LIST", b"0", b"1", b"01", b"a", b"%2e%2e", b"..", b"/",
                              b"%", b"%41", b"\xc3\xa9", DIGEST.encode(), b"", b"FILE", b"READY", b"DONE", b"ERR",
                              b"404", b"WAIT", b"9" * 20]), max_size=6).map(lambda parts: b" ".join(parts) + b"\n"),
)


@settings(max_examples=400, deadline=None)
@given(_lines)
def test_request_parser_only_raises_protocol_errors(line: bytes) -> None:
    try:
        request = fx.parse_request(line)
    except fx.FilexferError as exc:
        assert 400 <= exc.status <= 599
    else:
        assert fx.parse_request(request.encode()) == request  # what parses, re-encodes


@settings(max_examples=300, deadline=None)
@given(_lines, st.sampled_from(["LIST", "FILE", "READY", "DONE"]))
def test_reply_and_entry_parsers_only_raise_protocol_errors(line: bytes, expect: str) -> None:
    for parse in (lambda: fx.parse_reply(line, expect), lambda: fx.parse_entry(line)):
        try:
            parse()
        except fx.FilexferError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_line_buffer_never_exceeds_its_limit(chunks: list[bytes]) -> None:
    buf = fx.LineBuffer(64)
    for chunk in chunks:
        try:
            line = buf.feed(chunk)
        except fx.FilexferError:
            return
        if line is not None:
            assert line.endswith(b"\n") and len(line) <= 64
        assert len(buf.rest) < 64 + 40


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.integers(min_value=0, max_value=fx.MAX_NUMBER))
def test_any_acceptable_name_round_trips(name: str, offset: int) -> None:
    if fx.name_problem(name) is not None or any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return  # refused names are covered above; lone surrogates are not text
    assert fx.parse_request(fx.GetRequest(name, offset).encode()) == fx.GetRequest(name, offset)


def test_wait_lines_keep_a_get_or_put_alive_and_are_bounded() -> None:
    get = fx.ClientTransfer(fx.GetRequest("f"))
    get.start()
    assert get.handle_line(b"WAIT 5 10\n") == fx.Waiting(5, 10)
    assert get.state is fx.State.AWAIT_REPLY
    assert get.handle_line(b"FILE 10 " + DIGEST.encode() + b"\n") == fx.FileHeader(10, DIGEST)
    put = fx.ClientTransfer(fx.PutRequest("f", 0, DIGEST))
    put.start()
    with pytest.raises(fx.FilexferError):
        put.handle_line(b"WAIT 0 0\n")  # not before READY
    put = fx.ClientTransfer(fx.PutRequest("f", 0, DIGEST))
    put.start()
    put.handle_line(b"READY 0\n")
    assert put.handle_line(b"WAIT 0 0\n") == fx.Waiting(0, 0) and put.state is fx.State.AWAIT_DONE
    for bad in (b"WAIT 11 10\n", b"WAIT 1\n", b"WAIT 01 10\n"):
        fresh = fx.ClientTransfer(fx.GetRequest("f"))
        fresh.start()
        with pytest.raises(fx.FilexferError):
            fresh.handle_line(bad)
    endless = fx.ClientTransfer(fx.GetRequest("f"))
    endless.start()
    endless.waits = fx.MAX_WAITS
    with pytest.raises(fx.FilexferError):
        endless.handle_line(b"WAIT 1 2\n")


def test_server_sends_wait_only_where_allowed() -> None:
    server = fx.ServerTransfer()
    with pytest.raises(LocalProtocolError):
        server.wait(0, 1)
    server.handle_line(b"FX1 GET f 0\n")
    assert server.wait(3, 7) == b"WAIT 3 7\n"
    server.file(0, DIGEST)
    with pytest.raises(LocalProtocolError):
        server.wait(0, 0)
    lister = fx.ServerTransfer()
    lister.handle_line(b"FX1 LIST\n")
    with pytest.raises(LocalProtocolError):
        lister.wait(0, 0)
