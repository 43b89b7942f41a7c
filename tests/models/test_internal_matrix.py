"""Every inetd internal service under every model it allows, on real loopback sockets.

The matrix is driven by each service class's declared models, so a model
added to a service is tested without touching this file.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

from inetkit.proto.internal import CHARGEN_CYCLE, RFC868_EPOCH_OFFSET
from inetkit.services.registry import load_service_class
from inetkit.testing.net import connect, recv_all, recv_exactly, udp_request
from inetkit.testing.running import running_service

INTERNAL = ("echo", "discard", "chargen", "daytime", "time")
CASES = [(name, model) for name in INTERNAL for model in sorted(load_service_class(name).tcp_models)]


def probe_tcp(name: str, address: tuple[str, int]) -> None:
    with connect(address, timeout=5) as sock:
        if name == "echo":
            payload = bytes(range(256)) * 64
            sock.sendall(payload)
            assert recv_exactly(sock, len(payload)) == payload
        elif name == "discard":
            sock.sendall(b"x" * 100_000)
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b""  # nothing comes back, then a clean close
        elif name == "chargen":
            data = recv_exactly(sock, 20_000)
            cycle = CHARGEN_CYCLE * 4
            assert data == cycle[:20_000]
        elif name == "daytime":
            text = recv_all(sock)
            assert text.endswith(b"\r\n")
            parsed = time.strptime(text.decode().strip(), "%a %b %d %H:%M:%S %Y")
            assert abs(time.mktime(parsed) - time.mktime(time.gmtime())) < 5
        elif name == "time":
            data = recv_all(sock)
            assert len(data) == 4
            assert abs(struct.unpack("!I", data)[0] - RFC868_EPOCH_OFFSET - time.time()) < 5


@pytest.mark.parametrize(("name", "model"), CASES)
def test_internal_tcp_service_under_model(name: str, model: str) -> None:
    with running_service(name, model=model) as service:
        probe_tcp(name, service.address)
        probe_tcp(name, service.address)  # a second client is served too


@pytest.mark.parametrize("name", ["echo", "chargen", "daytime", "time"])
def test_internal_udp_services_reply(name: str) -> None:
    with running_service(name, proto="udp") as service:
        reply = udp_request(service.address, b"ping")
        if name == "echo":
            assert reply == b"ping"
        elif name == "chargen":
            assert reply in CHARGEN_CYCLE and len(reply) == 74
        elif name == "daytime":
            assert reply.endswith(b"\r\n")
        else:
            assert len(reply) == 4


def test_udp_discard_answers_nothing_but_keeps_serving() -> None:
    with running_service("discard", proto="udp") as service:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            sock.sendto(b"drop me", service.address)
            with pytest.raises(TimeoutError):
                sock.recvfrom(100)
        assert service.call(lambda: service.runtime.counters.accepted) == 1
