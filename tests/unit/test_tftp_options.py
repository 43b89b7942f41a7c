"""Option negotiation (RFC 2347/2348/2349/7440), server and client sides."""

from __future__ import annotations

import pytest

from inetkit.errors import RemoteProtocolError
from inetkit.proto.tftp.options import (
    Limits,
    Settings,
    TsizeTooLarge,
    accept_oack,
    negotiate,
    request_options,
)


def test_no_options_means_no_oack() -> None:
    oack, settings = negotiate({}, Limits(), is_read=True, file_size=10)
    assert oack == {} and settings == Settings()


def test_blksize_range_and_clamp() -> None:
    assert negotiate({"blksize": "1468"}, Limits(), is_read=True)[0] == {"blksize": "1468"}
    assert negotiate({"blksize": "70000"}, Limits(), is_read=True)[0] == {"blksize": "65464"}
    assert negotiate({"blksize": "9000"}, Limits(max_blksize=1024), is_read=True)[1].blksize == 1024
    for bad in ("7", "0", "-1", "abc", ""):
        oack, settings = negotiate({"blksize": bad}, Limits(), is_read=True)
        assert oack == {} and settings.blksize == 512


def test_windowsize_clamped_and_validated() -> None:
    assert negotiate({"windowsize": "16"}, Limits(max_windowsize=8), is_read=True)[1].windowsize == 8
    assert negotiate({"windowsize": "0"}, Limits(), is_read=True)[0] == {}
    assert negotiate({"windowsize": "65536"}, Limits(), is_read=True)[0] == {}


def test_timeout_accepted_or_ignored() -> None:
    oack, settings = negotiate({"timeout": "3"}, Limits(), is_read=True)
    assert oack == {"timeout": "3"} and settings.timeout == 3.0
    assert negotiate({"timeout": "0"}, Limits(), is_read=True)[0] == {}
    assert negotiate({"timeout": "256"}, Limits(), is_read=True)[0] == {}


def test_tsize_read_answers_size_write_checks_limit() -> None:
    assert negotiate({"tsize": "0"}, Limits(), is_read=True, file_size=1234)[0] == {"tsize": "1234"}
    assert negotiate({"tsize": "0"}, Limits(), is_read=True, file_size=None)[0] == {}
    assert negotiate({"tsize": "0"}, Limits(), is_read=True, file_size=0)[0] == {}  # curl rejects "tsize 0"
    assert negotiate({"tsize": "99"}, Limits(max_size=100), is_read=False)[0] == {"tsize": "99"}
    with pytest.raises(TsizeTooLarge) as info:
        negotiate({"tsize": "101"}, Limits(max_size=100), is_read=False)
    assert info.value.code == 3


def test_unknown_options_ignored_order_kept() -> None:
    oack, _ = negotiate({"multicast": "", "tsize": "0", "blksize": "1024", "utimeout": "5"}, Limits(), is_read=True, file_size=5)
    assert list(oack) == ["tsize", "blksize"]


def test_request_options_only_non_defaults() -> None:
    assert request_options(blksize=512, windowsize=1) == {}
    assert request_options(blksize=1468, windowsize=16, tsize=0) == {"blksize": "1468", "windowsize": "16", "tsize": "0"}
    with pytest.raises(ValueError):
        request_options(blksize=7)
    with pytest.raises(ValueError):
        request_options(windowsize=0)


def test_accept_oack_narrows_only() -> None:
    asked = {"blksize": "1468", "windowsize": "16", "tsize": "0"}
    assert accept_oack(asked, {"blksize": "1024", "tsize": "77"}) == Settings(blksize=1024, tsize=77)
    for bad in ({"blksize": "2000"}, {"windowsize": "32"}, {"timeout": "2"}, {"blksize": "x"}, {"blksize": "4"}):
        with pytest.raises(RemoteProtocolError) as info:
            accept_oack(asked, bad)
        assert info.value.code == 8
