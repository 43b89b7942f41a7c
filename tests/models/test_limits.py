"""Limits and access rules on real loopback sockets: the refused client is
closed cleanly while other clients, other sources and other services are served."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from inetkit.config.schema import Limits
from inetkit.testing.net import connect, recv_exactly, udp_request
from inetkit.testing.running import running_service, running_services, service_config


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")


def connect_from(source: str, address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """A TCP connection whose source address is ``source`` (any 127/8 address works on Linux)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def echoes(sock: socket.socket, payload: bytes = b"ping") -> bool:
    """True if the service echoes; False if it closed or reset the connection."""
    try:
        sock.sendall(payload)
        return recv_exactly(sock, len(payload)) == payload
    except (ConnectionError, EOFError):
        return False


def refused(sock: socket.socket) -> bool:
    """The daemon accepted then closed this connection without serving it."""
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except ConnectionError:
        return True


@contextmanager
def captured(logger: str = "inetkit") -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    log = logging.getLogger(logger)
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


ECHO = {
    "async": dict(handler="echo", model="async"),
    "thread": dict(handler="echo", model="thread"),
    "fork": dict(handler="echo", model="fork"),
    "exec": dict(program=("/bin/cat",), model="exec"),
}


@pytest.mark.parametrize("model", sorted(ECHO))
def test_max_connections_refuses_cleanly_while_others_are_served(model: str) -> None:
    limited = service_config(name="limited", limits=Limits(max_connections=2, idle_timeout=10.0), **ECHO[model])
    other = service_config("echo", name="other")
    with running_services([limited, other]) as (svc, free):
        held = [connect(svc.address) for _ in range(2)]
        try:
            assert all(echoes(s) for s in held)
            with connect(svc.address) as third:
                assert refused(third)
            # the other service, and the held connections, are unaffected
            with connect(free.address) as s:
                assert echoes(s)
            assert all(echoes(s, b"still") for s in held)
            held.pop().close()
            # a slot is free again once the daemon saw the close
            def admitted() -> bool:
                with connect(svc.address) as s:
                    return echoes(s)
            assert wait_for(admitted)
        finally:
            for s in held:
                s.close()
        assert wait_for(lambda: svc.call(lambda: svc.runtime.counters.refused) >= 1)


def test_max_per_source_counts_each_source_separately() -> None:
    with running_service("echo", limits=Limits(max_per_source=1, idle_timeout=10.0)) as svc:
        with connect_from("127.0.0.1", svc.address) as first:
            assert echoes(first)
            with connect_from("127.0.0.1", svc.address) as second:
                assert refused(second)
            with connect_from("127.0.0.2", svc.address) as other_source:
                assert echoes(other_source)
            assert echoes(first, b"unaffected")


def test_deny_list_ipv4() -> None:
    with running_service("echo", limits=Limits(deny=("127.0.0.2/32",), idle_timeout=10.0)) as svc:
        with captured() as records:
            for _ in range(5):
                with connect_from("127.0.0.2", svc.address) as s:
                    assert refused(s)
            with connect_from("127.0.0.1", svc.address) as s:
                assert echoes(s)
        refusals = [r for r in records if "refused" in r.getMessage()]
        # five refusals in one burst: one log line
        assert len(refusals) == 1, [r.getMessage() for r in refusals]
        assert "denied by access rules" in refusals[0].getMessage()
        assert svc.call(lambda: svc.runtime.counters.refused) == 5


@needs_ipv6
@pytest.mark.parametrize("model", ["async", "thread"])
def test_access_rules_ipv6_and_v4_mapped_peers(model: str) -> None:
    # one dual-stack listener: IPv4 peers arrive v4-mapped and are judged as IPv4
    limits = Limits(allow=("127.0.0.0/8", "::1/128"), deny=("127.0.0.3",), idle_timeout=10.0)
    with running_service("echo", model=model, bind="::", limits=limits) as svc:
        port = svc.address[1]
        with connect_from("::1", ("::1", port)) as v6:
            assert echoes(v6)
        with connect_from("127.0.0.1", ("127.0.0.1", port)) as v4:
            assert echoes(v4)
        with connect_from("127.0.0.3", ("127.0.0.1", port)) as denied:
            assert refused(denied)
    only_v4 = Limits(allow=("127.0.0.0/8",), idle_timeout=10.0)
    with running_service("echo", model=model, bind="::", limits=only_v4) as svc:
        port = svc.address[1]
        with connect_from("::1", ("::1", port)) as v6:
            assert refused(v6)
        with connect_from("127.0.0.1", ("127.0.0.1", port)) as v4:
            assert echoes(v4)


def test_rate_limit_slows_the_flooder_not_a_second_source() -> None:
    limits = Limits(rate_per_source=10.0, rate_burst=5, idle_timeout=10.0)
    stop = threading.Event()
    flood_results: list[bool] = []

    with running_service("echo", limits=limits) as svc, captured() as records:
        flood_time: list[float] = []

        def flood() -> None:
            # about 50 times the allowed rate, bounded in count and time
            started = time.monotonic()
            while not stop.is_set() and time.monotonic() < started + 3.0 and len(flood_results) < 3000:
                try:
                    with connect_from("127.0.0.1", svc.address, timeout=2.0) as s:
                        flood_results.append(echoes(s, b"f"))
                except OSError:
                    flood_results.append(False)
                time.sleep(0.002)
            flood_time.append(time.monotonic() - started)

        flooder = threading.Thread(target=flood)
        flooder.start()
        try:
            latencies = []
            for i in range(20):
                started = time.perf_counter()
                with connect_from("127.0.0.2", svc.address) as s:
                    assert echoes(s, b"p%d" % i)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.11)  # a polite client: under 10 connections/s
        finally:
            stop.set()
            flooder.join(10)
        served = sum(flood_results)
        # the flood lasted as long as the polite client's visits
        assert flood_time and flood_time[0] >= 2.0
        # the flooder got its burst plus rate x elapsed, and was refused the rest
        assert len(flood_results) > 3 * served, (served, len(flood_results))
        assert 5 <= served <= 5 + 10 * flood_time[0] + 2, (served, flood_time)
        # the second source was never refused, and served at loopback latency
        latencies.sort()
        assert latencies[len(latencies) // 2] < 0.05, latencies  # loopback latency, not the flooder's
        assert latencies[-1] < 1.0, latencies
        counters = svc.call(lambda: svc.runtime.counters.as_dict())
        assert counters["refused"] == len(flood_results) - served
        lines = [r.getMessage() for r in records if "refused" in r.getMessage()]
        # logged once per burst, not once per refused connection
        assert 1 <= len(lines) <= 2, lines
        assert "127.0.0.1" in lines[0] and "rate_per_source" in lines[0]


def test_udp_datagram_rules_and_rate() -> None:
    limits = Limits(rate_per_source=2.0, rate_burst=2, deny=("127.0.0.3",), idle_timeout=10.0)
    with running_service("echo", proto="udp", limits=limits) as svc:
        assert udp_request(svc.address, b"one") == b"one"
        assert udp_request(svc.address, b"two") == b"two"
        with pytest.raises(TimeoutError):
            udp_request(svc.address, b"three", timeout=0.3)  # the source's burst is spent
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.settimeout(2.0)
            other.bind(("127.0.0.2", 0))
            other.sendto(b"other", svc.address)
            assert other.recvfrom(100)[0] == b"other"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as denied:
            denied.settimeout(0.3)
            denied.bind(("127.0.0.3", 0))
            denied.sendto(b"nope", svc.address)
            with pytest.raises(TimeoutError):
                denied.recvfrom(100)
        assert svc.call(lambda: svc.runtime.counters.refused) == 2


@pytest.mark.parametrize("model", ["async", "thread", "iterative", "fork"])
def test_idle_timeout_is_honoured(model: str) -> None:
    with running_service("echo", model=model, limits=Limits(idle_timeout=0.3)) as svc:
        with connect(svc.address) as s:
            assert echoes(s)
            started = time.monotonic()
            try:
                assert s.recv(1) == b""  # the daemon closes the quiet connection
            except ConnectionResetError:
                pass
            assert 0.2 < time.monotonic() - started < 5.0


LOW_FD_LAUNCHER = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))  # hard too: the daemon cannot raise it
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.parametrize("model", ["async", "thread"])
def test_accept_backs_off_on_fd_exhaustion_and_recovers(tmp_path, model: str) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from inetkit.testing.running import RunningDaemon, _wait_ready, stop_process

    config = tmp_path / "fds.toml"
    config.write_text(f'[services.echo]\nport = 0\nhandler = "echo"\nmodel = "{model}"\n')
    with open(tmp_path / "stderr.log", "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", LOW_FD_LAUNCHER, sys.executable, "-m", "inetkit.cli.main", "serve",
             "-c", str(config), "--no-control", "--no-connection-log"],
            stdout=subprocess.PIPE, stderr=log_file, text=True,
        )
    daemon = RunningDaemon(proc)
    held: list[socket.socket] = []
    try:
        _wait_ready(daemon, 20.0)
        address = ("127.0.0.1", daemon.port("echo"))
        # more clients than the daemon has descriptors: the excess wait in the backlog
        for _ in range(100):
            held.append(connect(address, timeout=5))
        served = sum(echoes(s) for s in held[:20])
        assert served == 20
        # the daemon takes the backlog until it runs out of descriptors
        if model == "thread":
            # inetkit's accept loop backs off and retries, and says so (once per
            # back-off step); the clients beyond the limit wait in the backlog
            assert wait_for(lambda: "accept: Too many open files; retrying" in (tmp_path / "stderr.log").read_text())
        else:
            # uvloop (libuv) accepts and closes what it cannot hold, and keeps accepting
            assert wait_for(lambda: len(os.listdir(f"/proc/{proc.pid}/fd")) >= 63)
        for s in held:
            s.close()
        held.clear()
        # descriptors are free again: the daemon serves new clients (it did not die or stop accepting)
        def serves() -> bool:
            try:
                with connect(address, timeout=3) as s:
                    return echoes(s)
            except OSError:
                return False
        assert wait_for(serves, timeout=20)
        assert proc.poll() is None
    finally:
        for s in held:
            s.close()
        stop_process(proc)
    log = (tmp_path / "stderr.log").read_text()
    assert "Traceback" not in log
