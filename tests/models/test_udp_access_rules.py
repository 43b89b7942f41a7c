"""The daemon's allow/deny rules reach UDP services that own their socket
(TFTP's serve_udp) as they reach the plain datagram services."""

from __future__ import annotations

import socket

import pytest

from inetkit.config.schema import Limits
from inetkit.testing.running import running_service

RRQ = b"\x00\x01hello.txt\x00octet\x00"


def _reply(address: tuple[str, int], payload: bytes, wait: float) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(payload, address)
        try:
            return sock.recvfrom(70000)[0]
        except TimeoutError:
            return None


@pytest.mark.parametrize(("limits", "served"), [
    (Limits(deny=("127.0.0.0/8",)), False),
    (Limits(allow=("10.0.0.0/8",)), False),
    (Limits(allow=("127.0.0.1",)), True),
])
def test_tftp_requests_follow_the_access_rules(tmp_path, limits: Limits, served: bool) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "hello.txt").write_bytes(b"hi there\n")
    with running_service("tftp", proto="udp", options={"root": str(tmp_path)}, limits=limits) as service:
        reply = _reply(service.address, RRQ, wait=5.0 if served else 0.5)
        if served:
            assert reply == b"\x00\x03\x00\x01hi there\n"  # DATA block 1, the whole file
        else:
            assert reply is None  # dropped without a word, like every refused datagram
            assert service.call(lambda: service.runtime.counters.refused) == 1


def test_datagram_service_follows_the_access_rules() -> None:
    with running_service("echo", proto="udp", limits=Limits(deny=("127.0.0.0/8",))) as service:
        assert _reply(service.address, b"ping", wait=0.5) is None
    with running_service("echo", proto="udp", limits=Limits(allow=("127.0.0.0/8",))) as service:
        assert _reply(service.address, b"ping", wait=5.0) == b"ping"
