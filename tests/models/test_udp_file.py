"""The udp-file service (seed 002's raw UDP file receiver) on loopback."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

import pytest

from inetkit.clients.udp_file import UdpSendError, send_file
from inetkit.testing.running import running_service


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3.0)
    return sock


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 50_000])
def test_file_received_and_done_answered(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    src = tmp_path / "send_file.txt"
    src.write_bytes(data)
    out = tmp_path / "out"
    with running_service("udp-file", proto="udp", options={"directory": str(out)}) as svc:
        result = send_file(str(src), svc.address, delay=0.0002 if size > 20_000 else 0.0)
        assert result.bytes == size and result.datagrams == -(-size // 1024)
        completed = svc.runtime.service.completed
    if size == 0:
        # DONE alone (or a repeated DONE whose answer was lost) is answered, stores nothing
        assert completed == [] and (not out.exists() or list(out.iterdir()) == [])
    else:
        (peer, path, received), = completed
        assert received == size
        assert Path(path).read_bytes() == data and Path(path).parent == out


def test_seed_wire_behaviour(tmp_path: Path) -> None:
    """Exactly the seed's exchange: pieces, then 'DONE' -> 'DONE' (4 bytes)."""
    with running_service("udp-file", proto="udp", options={"directory": str(tmp_path)}) as svc, udp_socket() as sock:
        sock.sendto(b"hello ", svc.address)
        sock.sendto(b"world", svc.address)
        sock.sendto(b"DONE", svc.address)
        reply, addr = sock.recvfrom(1024)
        assert reply == b"DONE" and addr == svc.address
        port = sock.getsockname()[1]
    assert (tmp_path / f"received_file-127.0.0.1-{port}").read_bytes() == b"hello world"


def test_concurrent_senders_kept_apart(tmp_path: Path) -> None:
    with running_service("udp-file", proto="udp", options={"directory": str(tmp_path)}) as svc:
        socks = [udp_socket() for _ in range(3)]
        try:
            for round_ in range(20):  # interleaved datagrams from three senders
                for i, sock in enumerate(socks):
                    sock.sendto(f"s{i}r{round_:02d};".encode(), svc.address)
            for sock in socks:
                sock.sendto(b"DONE", svc.address)
                assert sock.recvfrom(16)[0] == b"DONE"
            for i, sock in enumerate(socks):
                port = sock.getsockname()[1]
                expected = "".join(f"s{i}r{r:02d};" for r in range(20)).encode()
                assert (tmp_path / f"received_file-127.0.0.1-{port}").read_bytes() == expected
        finally:
            for sock in socks:
                sock.close()


def test_parallel_clients(tmp_path: Path) -> None:
    datas = [random.Random(i).randbytes(8000 + i) for i in range(3)]
    errors: list[BaseException] = []
    with running_service("udp-file", proto="udp", options={"directory": str(tmp_path / "in")}) as svc:
        def send(i: int) -> None:
            path = tmp_path / f"f{i}"
            path.write_bytes(datas[i])
            try:
                send_file(str(path), svc.address)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
        threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        completed = svc.runtime.service.completed
    assert not errors
    assert sorted(Path(p).read_bytes() for _, p, _ in completed) == sorted(datas)


def test_no_receiver_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with udp_socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # a port that answers nothing
        with pytest.raises(UdpSendError):
            send_file(str(src), ("127.0.0.1", port), timeout=0.2, retries=1)


def test_size_cap_discards(tmp_path: Path) -> None:
    with running_service("udp-file", proto="udp", options={"directory": str(tmp_path), "max_size": 10}) as svc, udp_socket() as sock:
        sock.sendto(b"123456", svc.address)
        sock.sendto(b"789012", svc.address)  # over 10 bytes: the partial file is dropped
        sock.sendto(b"DONE", svc.address)
        assert sock.recvfrom(16)[0] == b"DONE"
    assert list(tmp_path.iterdir()) == []
