"""The lossy UDP relay itself: loopback only, delays, per-TID port pairs, seeded loss."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from inetkit.testing.lossy import Impairment, LossyRelay


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3.0)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError):
        LossyRelay(("192.0.2.1", 69))


def test_tid_pairs_and_delay() -> None:
    """A server that answers from a new port (a TFTP TID) is seen by the client
    as a new relay port, and the client's reply to it reaches that new port."""
    with udp() as server, udp() as tid, udp() as client:
        done = threading.Event()

        def serve() -> None:
            _, peer = server.recvfrom(100)
            tid.sendto(b"from-tid", peer)
            data, _ = tid.recvfrom(100)
            tid.sendto(b"ack:" + data, peer)
            done.set()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with LossyRelay(server.getsockname(), to_server=Impairment(delay=0.02), to_client=Impairment(delay=0.02)) as relay:
            started = time.monotonic()
            client.sendto(b"hello", relay.address)
            data, relay_tid = client.recvfrom(100)
            assert data == b"from-tid" and relay_tid != relay.address
            assert time.monotonic() - started >= 0.04  # delayed both ways
            client.sendto(b"x", relay_tid)
            assert client.recvfrom(100) == (b"ack:x", relay_tid)
        thread.join(5)
        assert done.is_set()


def test_seeded_loss_is_reproducible() -> None:
    def run() -> list[int]:
        with udp() as server, udp() as client:
            with LossyRelay(server.getsockname(), to_server=Impairment(drop=0.5), seed=42) as relay:
                for i in range(40):
                    client.sendto(bytes([i]), relay.address)
                got = []
                server.settimeout(0.3)
                try:
                    while True:
                        got.append(server.recvfrom(10)[0][0])
                except TimeoutError:
                    pass
                assert relay.stats.dropped == 40 - len(got)
                return got

    first = run()
    assert 5 < len(first) < 35 and first == run()
