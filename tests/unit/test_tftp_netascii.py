"""Netascii: encoding, decoding, and CR/LF split safely across blocks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inetkit.proto.tftp import netascii


def test_encode_rules() -> None:
    assert netascii.encode(b"a\nb\rc\r\n") == b"a\r\nb\r\0c\r\0\r\n"
    assert netascii.encoded_size(b"a\nb\rc\r\n") == len(netascii.encode(b"a\nb\rc\r\n"))


def test_decode_rules() -> None:
    assert netascii.decode(b"a\r\nb\r\0c\r\0\r\n") == b"a\nb\rc\r\n"
    assert netascii.decode(b"bare\rcr") == b"bare\rcr"  # lenient
    assert netascii.decode(b"end\r") == b"end\r"


def test_cr_held_across_blocks() -> None:
    decoder = netascii.Decoder()
    assert decoder.feed(b"line\r") == b"line"
    assert decoder.feed(b"\nnext\r") == b"\nnext"
    assert decoder.feed(b"\0") == b"\r"
    assert decoder.flush() == b""


_text = st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\0", b"\r\n", b"x" * 7]), max_size=200).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(_text, st.lists(st.integers(1, 40), max_size=30))
def test_round_trip_any_split(data: bytes, cuts: list[int]) -> None:
    wire = netascii.encode(data)
    decoder = netascii.Decoder()
    out, pos = [], 0
    for cut in cuts:
        out.append(decoder.feed(wire[pos:pos + cut]))
        pos += cut
    out.append(decoder.feed(wire[pos:]))
    out.append(decoder.flush())
    assert b"".join(out) == data


@settings(max_examples=200, deadline=None)
@given(_text, st.integers(1, 50))
def test_encoding_is_split_invariant(data: bytes, cut: int) -> None:
    assert netascii.encode(data[:cut]) + netascii.encode(data[cut:]) == netascii.encode(data)
