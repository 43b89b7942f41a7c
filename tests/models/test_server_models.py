"""The server models' defining properties, on real loopback sockets.

- iterative serialises: a second client waits until the first is done;
- every concurrent model overlaps: a second client is served meanwhile;
- fork reaps every child; async pushes back on a peer that never reads;
- a dual-stack listener reports IPv4 peers as plain IPv4.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from inetkit.config.schema import Limits
from inetkit.testing.net import connect, recv_exactly
from inetkit.testing.running import running_service


def _echo_once(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def test_iterative_serialises_connections() -> None:
    with running_service("echo", model="iterative") as service:
        first = connect(service.address)
        second = connect(service.address)  # completes: the kernel's backlog holds it
        with first, second:
            assert _echo_once(first, b"one") == b"one"
            second.sendall(b"two")
            second.settimeout(0.5)
            with pytest.raises(TimeoutError):
                second.recv(10)  # not served while the first connection is open
            second.settimeout(5)
            first.close()
            assert recv_exactly(second, 3) == b"two"


@pytest.mark.parametrize("model", ["fork", "thread", "async"])
def test_concurrent_models_overlap(model: str) -> None:
    with running_service("echo", model=model) as service:
        held = [connect(service.address) for _ in range(5)]
        try:
            for i, sock in enumerate(held):
                assert _echo_once(sock, b"%d" % i) == b"%d" % i
            for i, sock in enumerate(reversed(held)):
                assert _echo_once(sock, b"again%d" % i) == b"again%d" % i
        finally:
            for sock in held:
                sock.close()


def test_async_workers_share_the_port() -> None:
    with running_service("echo", model="async", workers=2) as service:
        def worker_pids() -> list[int]:
            stats = service.call(lambda: dict(service.runtime.ctx.stats))
            return [v for k, v in stats.items() if k.startswith("worker_pid")]

        assert _wait_for(lambda: len(worker_pids()) == 2)
        assert all(os.path.exists(f"/proc/{pid}") for pid in worker_pids())
        for i in range(20):
            with connect(service.address) as sock:
                assert _echo_once(sock, b"w%d" % i) == b"w%d" % i


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append((int(entry.name), fields[0]))
    return out


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_fork_200_connections_leave_no_zombie() -> None:
    with running_service("echo", model="fork", max_children=16) as service:
        assert _wait_for(lambda: "worker_pid" in service.call(lambda: dict(service.runtime.ctx.stats)))
        worker = service.call(lambda: service.runtime.ctx.stats["worker_pid"])
        batch: list[socket.socket] = []
        for i in range(200):
            sock = connect(service.address)
            batch.append(sock)
            assert _echo_once(sock, b"z") == b"z"
            if len(batch) == 10:  # keep up to 10 children alive at once
                for s in batch:
                    s.close()
                batch.clear()
        for s in batch:
            s.close()
        assert _wait_for(lambda: not _children(worker)), f"children left: {_children(worker)}"
        assert os.path.exists(f"/proc/{worker}")  # the worker itself keeps running


def test_fork_max_children_makes_clients_wait() -> None:
    with running_service("echo", model="fork", max_children=1) as service:
        first = connect(service.address)
        second = connect(service.address)
        with first, second:
            assert _echo_once(first, b"a") == b"a"
            second.sendall(b"b")
            second.settimeout(0.5)
            with pytest.raises(TimeoutError):
                second.recv(1)
            second.settimeout(5)
            first.close()
            assert recv_exactly(second, 1) == b"b"


def test_async_echo_pushes_back_on_a_peer_that_never_reads() -> None:
    with running_service("echo", model="async") as service:
        with connect(service.address, timeout=1.5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sent = 0
            chunk = b"x" * 65536
            with pytest.raises(TimeoutError):
                while sent < 512 * 1024 * 1024:
                    sent += sock.send(chunk)
            # the daemon stopped reading once its writes backed up: bounded, not 512 MiB
            assert sent < 64 * 1024 * 1024


def test_idle_timeout_drops_a_silent_client() -> None:
    for model in ("async", "thread"):
        with running_service("echo", model=model, limits=Limits(idle_timeout=0.3)) as service:
            with connect(service.address, timeout=5) as sock:
                started = time.monotonic()
                assert sock.recv(1) == b""  # closed by the daemon
                assert 0.2 < time.monotonic() - started < 4


def test_dual_stack_listener_shows_ipv4_peers_plainly() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    with running_service("echo", model="async", bind="::") as service:
        port = service.port
        with connect(("127.0.0.1", port)) as v4, connect(("::1", port)) as v6:
            assert _echo_once(v4, b"4") == b"4" and _echo_once(v6, b"6") == b"6"
            peers = service.call(lambda: sorted(c.peer[0] for c in service.runtime.live.values()))
        assert peers == ["127.0.0.1", "::1"]


def test_chargen_produces_only_what_a_slow_reader_can_take() -> None:
    with running_service("chargen", model="async") as service:
        with connect(service.address) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            assert len(recv_exactly(sock, 1000)) == 1000  # it is producing

            def produced() -> int:
                return service.call(lambda: sum(c.ctx.bytes_out for c in service.runtime.live.values() if c.ctx))

            # once the socket buffers are full, production stops: the count settles
            samples = [produced()]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.2)
                samples.append(produced())
                if samples[-1] == samples[-2]:
                    break
            assert samples[-1] == samples[-2], "chargen kept producing for a reader that does not read"
            assert samples[-1] < 32 * 1024 * 1024


@pytest.mark.parametrize("model", ["iterative", "async", "thread", "fork"])
def test_session_timeout_ends_a_trickling_client(model: str) -> None:
    limits = Limits(idle_timeout=5.0, session_timeout=0.6)
    with running_service("echo", model=model, limits=limits) as service:
        with connect(service.address, timeout=5) as sock:
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 5 and not closed:
                try:
                    sock.sendall(b"x")  # active enough that idle_timeout never fires
                    closed = sock.recv(1) == b""
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                time.sleep(0.05)
            assert closed, "the session deadline did not end the connection"
            assert 0.4 < time.monotonic() - started < 4
        # the next client is served (the iterative model is free again)
        with connect(service.address) as sock:
            assert _echo_once(sock, b"next") == b"next"
