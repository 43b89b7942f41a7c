"""TFTP packet codec: every opcode, strictness, and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inetkit.errors import LocalProtocolError, RemoteProtocolError
from inetkit.proto.tftp import packets as P


def test_rrq_wire_format_matches_rfc1350() -> None:
    assert P.encode_request(P.RRQ, "a.txt", "octet") == b"\x00\x01a.txt\x00octet\x00"
    raw = b"\x00\x02dir/f\x00NetASCII\x00BLKSIZE\x001468\x00tsize\x000\x00"
    packet = P.decode(raw)
    assert packet == P.Request(P.WRQ, "dir/f", "netascii", {"blksize": "1468", "tsize": "0"})


def test_data_ack_error_oack() -> None:
    assert P.decode(P.encode_data(70000, b"xyz")) == P.Data(70000 & 0xFFFF, b"xyz")
    assert P.encode_data(1, b"") == b"\x00\x03\x00\x01"
    assert P.decode(b"\x00\x04\xff\xff") == P.Ack(65535)
    assert P.decode(P.encode_error(1, "File not found")) == P.Error(1, "File not found")
    assert P.decode(P.encode_oack({"blksize": "512"})) == P.OAck({"blksize": "512"})


@pytest.mark.parametrize("raw, code", [
    (b"", P.ERR_ILLEGAL),
    (b"\x00", P.ERR_ILLEGAL),
    (b"\x00\x09abc", P.ERR_ILLEGAL),  # unknown opcode
    (b"\x00\x01file\x00octet", P.ERR_ILLEGAL),  # missing NUL
    (b"\x00\x01file\x00", P.ERR_ILLEGAL),  # missing mode
    (b"\x00\x01\x00octet\x00", P.ERR_ILLEGAL),  # empty filename
    (b"\x00\x01f\x00binary\x00", P.ERR_ILLEGAL),  # unknown mode
    (b"\x00\x01f\x00octet\x00blksize\x00", P.ERR_OPTIONS),  # option without value
    (b"\x00\x01f\x00octet\x00a\x001\x00A\x002\x00", P.ERR_OPTIONS),  # duplicate option
    (b"\x00\x03\x00", P.ERR_ILLEGAL),  # truncated DATA
    (b"\x00\x04\x00\x01\x00", P.ERR_ILLEGAL),  # ACK too long
    (b"\x00\x06", P.ERR_OPTIONS),  # empty OACK
    (b"\x00\x03\x00\x01" + bytes(P.MAX_BLKSIZE + 1), P.ERR_ILLEGAL),
])
def test_malformed_packets_raise_protocol_error_with_code(raw: bytes, code: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        P.decode(raw)
    assert info.value.code == code


def test_error_without_nul_is_still_read() -> None:
    assert P.decode(b"\x00\x05\x00\x02nope") == P.Error(2, "nope")


def test_encoder_refuses_nul_in_text() -> None:
    with pytest.raises(LocalProtocolError):
        P.encode_request(P.RRQ, "a\0b")
    with pytest.raises(LocalProtocolError):
        P.encode_request(P.RRQ, "")
    assert P.decode(P.encode_error(0, "a\0b")) == P.Error(0, "ab")


def test_describe_error() -> None:
    assert "file not found" in P.describe_error(1, "")
    assert "code 9" in P.describe_error(9, "odd")


_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=30)
_opts = st.dictionaries(_text.map(str.lower), _text, max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_decode_never_raises_anything_but_protocol_errors(raw: bytes) -> None:
    try:
        packet = P.decode(raw)
    except RemoteProtocolError as exc:
        assert exc.code in (P.ERR_ILLEGAL, P.ERR_OPTIONS)
    else:
        # whatever decodes re-encodes to something that decodes the same
        assert P.decode(P.encode(packet)) == packet


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([P.RRQ, P.WRQ]), _text, st.sampled_from(["octet", "netascii"]), _opts)
def test_request_round_trip(opcode: int, name: str, mode: str, options: dict[str, str]) -> None:
    packet = P.Request(opcode, name, mode, options)
    assert P.decode(P.encode(packet)) == packet


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), st.binary(max_size=2000), st.integers(0, 0xFFFF), _text)
def test_data_ack_error_round_trip(block: int, payload: bytes, code: int, message: str) -> None:
    assert P.decode(P.encode(P.Data(block, payload))) == P.Data(block, payload)
    assert P.decode(P.encode(P.Ack(block))) == P.Ack(block)
    assert P.decode(P.encode(P.Error(code, message))) == P.Error(code, message)


@settings(max_examples=100, deadline=None)
@given(_opts.filter(bool))
def test_oack_round_trip(options: dict[str, str]) -> None:
    assert P.decode(P.encode(P.OAck(options))) == P.OAck(options)
