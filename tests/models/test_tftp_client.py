"""inetkit's TFTP client against scripted servers on loopback: foreign TIDs,
servers that refuse or ignore options, servers that go silent."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from inetkit.clients.tftp import TftpError, get_file
from inetkit.proto.tftp import packets as P


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3.0)
    sock.bind(("127.0.0.1", 0))
    return sock


def scripted(script: Callable[[socket.socket], None]) -> tuple[socket.socket, threading.Thread, list[BaseException]]:
    main = udp()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            script(main)
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return main, thread, errors


def test_foreign_tid_gets_error_5_and_transfer_completes(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def script(main: socket.socket) -> None:
        request, client = main.recvfrom(1024)
        assert isinstance(P.decode(request), P.Request)
        with udp() as tid, udp() as intruder:
            tid.sendto(P.encode_data(1, b"a" * 512), client)
            assert P.decode(tid.recvfrom(100)[0]) == P.Ack(1)
            intruder.sendto(P.encode_data(2, b"evil"), client)
            seen["intruder"] = P.decode(intruder.recvfrom(100)[0])
            tid.sendto(P.encode_data(2, b"end"), client)
            assert P.decode(tid.recvfrom(100)[0]) == P.Ack(2)

    main, thread, errors = scripted(script)
    with main:
        get_file(*main.getsockname(), "f", str(tmp_path / "f"), tsize=False)
        thread.join(5)
    assert not errors
    assert (tmp_path / "f").read_bytes() == b"a" * 512 + b"end"
    assert isinstance(seen["intruder"], P.Error) and seen["intruder"].code == P.ERR_UNKNOWN_TID  # type: ignore[attr-defined]


def test_error_8_makes_the_client_ask_again_without_options(tmp_path: Path) -> None:
    requests: list[P.Request] = []

    def script(main: socket.socket) -> None:
        first, client = main.recvfrom(1024)
        requests.append(P.decode(first))  # type: ignore[arg-type]
        main.sendto(P.encode_error(P.ERR_OPTIONS, "no options here"), client)
        second, client = main.recvfrom(1024)
        requests.append(P.decode(second))  # type: ignore[arg-type]
        with udp() as tid:
            tid.sendto(P.encode_data(1, b"plain"), client)
            assert P.decode(tid.recvfrom(100)[0]) == P.Ack(1)

    main, thread, errors = scripted(script)
    with main:
        result = get_file(*main.getsockname(), "f", str(tmp_path / "f"), blksize=1468, windowsize=8)
        thread.join(5)
    assert not errors
    assert requests[0].options and requests[1].options == {}
    assert (tmp_path / "f").read_bytes() == b"plain" and result.blksize == 512


def test_silent_server_times_out_and_leaves_no_file(tmp_path: Path) -> None:
    with udp() as silent:
        with pytest.raises(TftpError) as info:
            # retransmits, then gives up after 1 s without an answer
            get_file(*silent.getsockname(), "f", str(tmp_path / "f"), timeout=0.2, give_up=1.0)
        assert "timed out" in str(info.value) and not info.value.remote
    assert list(tmp_path.iterdir()) == []


def test_bad_oack_is_refused_with_error_8(tmp_path: Path) -> None:
    replies: list[P.Packet] = []

    def script(main: socket.socket) -> None:
        _, client = main.recvfrom(1024)
        with udp() as tid:
            tid.sendto(P.encode_oack({"blksize": "9000"}), client)  # more than the 1468 asked
            replies.append(P.decode(tid.recvfrom(200)[0]))

    main, thread, errors = scripted(script)
    with main:
        with pytest.raises(TftpError) as info:
            get_file(*main.getsockname(), "f", str(tmp_path / "f"), blksize=1468)
        thread.join(5)
    assert not errors and info.value.code == P.ERR_OPTIONS
    assert isinstance(replies[0], P.Error) and replies[0].code == P.ERR_OPTIONS


def test_precise_waiter_spins_then_sleeps_and_reports_readiness() -> None:
    """The windowed transfers' wait: ready data is seen at once (also while
    spinning), and an idle socket times out after about the time asked."""
    import socket
    import time

    from inetkit.io.udp_batch import precise_waiter

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        for spin in (0.0, 0.0002):
            wait = precise_waiter(a, spin)
            started = time.monotonic()
            assert wait(0.003) is False
            assert 0.002 <= time.monotonic() - started < 0.5
            for _ in range(40):  # failed spins use up the credit: then it only sleeps
                assert wait(0.0005) is False
            b.sendto(b"x", a.getsockname())
            assert wait(1.0) is True
            assert a.recv(16) == b"x"
