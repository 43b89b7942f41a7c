"""Every built-in service in the registry, under every model it declares.

Service-specific behaviour is tested beside each service; this matrix checks
what every service owes the daemon whatever its protocol: it starts under
each model it claims, survives clients that connect and vanish, send garbage
or reset, and still serves the next client afterwards.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest

from inetkit.errors import ConfigError
from inetkit.services.registry import BUILTIN, load_service_class
from inetkit.testing.running import running_service


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for name in sorted(BUILTIN):
        try:
            cls = load_service_class(name)
        except ConfigError as exc:  # reported by the test below instead of breaking collection
            cases.append((name, "unavailable", str(exc)))
            continue
        for proto in sorted(cls.transports):
            for model in sorted(cls.models_for(proto)):
                cases.append((name, proto, model))
    return cases


CASES = _cases()


def _abuse_tcp(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5):
        pass  # connect and close at once
    with socket.create_connection(address, timeout=5) as sock:
        try:
            sock.sendall(os.urandom(3000) + b"\n\x00\r\n" * 10)
        except OSError:
            pass  # the service may close on garbage: that is fine
    with socket.create_connection(address, timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close


def _still_serving_tcp(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendall(b"hello\n")
            sock.recv(1)  # a reply, EOF or a timeout are all fine: the daemon accepted us
        except (TimeoutError, ConnectionResetError):
            pass


@pytest.mark.parametrize(("name", "proto", "model"), CASES)
def test_service_survives_abuse_under_model(name: str, proto: str, model: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert proto != "unavailable", model
    with running_service(name, proto=proto, model=model) as service:
        if proto == "tcp":
            _abuse_tcp(service.address)
            _still_serving_tcp(service.address)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for payload in (b"", b"\x00", os.urandom(700), b"\x00\x01" + b"A" * 2000):
                    sock.sendto(payload, service.address)
        errors_free = service.call(lambda: service.supervisor.services[0].task is not None and not service.supervisor.services[0].task.done())
        assert errors_free, "the service's model task died"


def test_matrix_covers_every_registered_service() -> None:
    assert {name for name, _, _ in CASES} == set(BUILTIN)
