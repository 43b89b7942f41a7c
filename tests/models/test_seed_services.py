"""The seed chapter's services on real loopback sockets, under every model they
allow, with a raw socket peer that sends exactly what the seed C clients send
(seed 000 §12-2-1..§12-3, 002 basics).  Byte-exact on the wire."""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Iterator

import pytest

from inetkit.config.schema import Limits
from inetkit.proto.greeting import padded_message
from inetkit.testing.logs import LogLines, captured_log
from inetkit.testing.net import connect, recv_all, recv_exactly, udp_request
from inetkit.testing.running import running_service

GREETING_MODELS = ["iterative", "fork", "thread", "async"]
IN_PROCESS = ["iterative", "thread", "async"]  # fork logs from another process
SEED_HTTP = padded_message("I want a HTTP service")
SEED_TELNET = padded_message("I want a Telnet service")


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    with captured_log("inetkit") as lines:
        yield lines


def send_in_segments(sock: socket.socket, data: bytes, cuts: tuple[int, ...]) -> None:
    """Send ``data`` as separate TCP segments (NODELAY plus a short gap), so the
    server sees the message split across reads."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = 0
    for cut in (*cuts, len(data)):
        sock.sendall(data[start:cut])
        start = cut
        time.sleep(0.02)


def reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), the way a crashed client vanishes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def seed_client_exchange(address: tuple[str, int], greeting: bytes, request: bytes = SEED_HTTP,
                         cuts: tuple[int, ...] = (5, 30)) -> socket.socket:
    """What the seed client does, asserting the exact greeting; returns the socket."""
    sock = connect(address, timeout=5)
    assert recv_exactly(sock, len(greeting)) == greeting
    send_in_segments(sock, request, cuts)
    return sock


# -- greeting (§12-2-1, §12-2-2) ----------------------------------------------------------


@pytest.mark.parametrize("model", GREETING_MODELS)
def test_greeting_is_byte_exact_under_every_model(model: str) -> None:
    with running_service("greeting", model=model) as svc:
        with seed_client_exchange(svc.address, b"welcome to network server!!!\x00") as sock:
            # nothing more comes from the server: it closes after the one message
            assert recv_all(sock) == b""


@pytest.mark.parametrize("model", IN_PROCESS)
def test_greeting_logs_the_client_text_with_its_peer(model: str, log_lines: LogLines) -> None:
    with running_service("greeting", model=model, options={"message": "welcome to server"}) as svc:
        with seed_client_exchange(svc.address, b"welcome to server\x00", cuts=(1, 2, 21, 22)) as sock:
            port = sock.getsockname()[1]
            assert recv_all(sock) == b""
        line = log_lines.wait_for("from client:")
    assert line.endswith(f"127.0.0.1:{port}: from client: I want a HTTP service")


@pytest.mark.parametrize("model", GREETING_MODELS)
def test_bad_greeting_clients_never_disturb_the_next(model: str) -> None:
    idle = 0.5
    with running_service("greeting", model=model, limits=Limits(idle_timeout=idle)) as svc:
        greeting = b"welcome to network server!!!\x00"
        silent = connect(svc.address, timeout=5)  # connects, never sends
        flood = connect(svc.address, timeout=5)  # sends far more than a message, no NUL
        resetter = connect(svc.address, timeout=5)  # half a message, then RST
        extra = connect(svc.address, timeout=5)  # a message and then lots more
        try:
            assert recv_exactly(silent, len(greeting)) == greeting
            assert recv_exactly(flood, len(greeting)) == greeting
            try:
                flood.sendall(b"A" * 200_000)
            except (ConnectionResetError, BrokenPipeError):
                pass  # the server closed after its cap: that is the point
            assert recv_exactly(resetter, len(greeting)) == greeting
            resetter.sendall(SEED_HTTP[:10])
            reset(resetter)
            assert recv_exactly(extra, len(greeting)) == greeting
            try:
                extra.sendall(SEED_HTTP + b"B" * 50_000)
            except (ConnectionResetError, BrokenPipeError):
                pass
            # the silent one is dropped after the idle timeout
            started = time.monotonic()
            try:
                assert silent.recv(10) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < idle + 3
            # and the next well-behaved client is served in full
            with seed_client_exchange(svc.address, greeting) as good:
                assert recv_all(good) == b""
        finally:
            for sock in (silent, flood, extra):
                sock.close()


@pytest.mark.parametrize("model", ["async", "thread"])
def test_linger_holds_no_one_up(model: str) -> None:
    with running_service("greeting", model=model, options={"linger": 1.0}) as svc:
        greeting = b"welcome to network server!!!\x00"
        started = time.monotonic()
        with seed_client_exchange(svc.address, greeting) as first:
            assert recv_all(first) == b""  # the connection is closed at once, before the linger
        with seed_client_exchange(svc.address, greeting) as second:
            assert recv_all(second) == b""
        assert time.monotonic() - started < 0.9
        # the lingering connections are still live in the runtime (like the seed's sleeping child)
        assert svc.call(lambda: len(svc.runtime.live)) >= 1


def _children(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            text = f.read()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def test_linger_under_fork_keeps_the_child_alive_after_closing() -> None:
    with running_service("greeting", model="fork", options={"linger": 1.5}) as svc:
        greeting = b"welcome to network server!!!\x00"
        started = time.monotonic()
        with seed_client_exchange(svc.address, greeting) as sock:
            assert recv_all(sock) == b""
        assert time.monotonic() - started < 1.0
        worker = svc.call(lambda: svc.runtime.ctx.stats.get("worker_pid"))
        assert worker, "the fork worker's pid is published in the runtime stats"
        assert _children(worker), "the forked child should still be sleeping (linger)"
        with seed_client_exchange(svc.address, greeting) as sock:  # and the next client is not held up
            assert recv_all(sock) == b""
        assert time.monotonic() - started < 1.4


# -- hello (002 basics) --------------------------------------------------------------------


@pytest.mark.parametrize("model", GREETING_MODELS)
def test_hello_tcp_byte_exact_with_the_message_split(model: str) -> None:
    with running_service("hello", model=model) as svc, connect(svc.address) as sock:
        send_in_segments(sock, b"Hello from client", (3, 11))
        assert recv_all(sock) == b"Hello from server"


@pytest.mark.parametrize("model", ["async", "iterative"])
def test_hello_tcp_bad_clients(model: str, log_lines: LogLines) -> None:
    with running_service("hello", model=model, limits=Limits(idle_timeout=0.5)) as svc:
        with connect(svc.address) as silent:  # half-closes without a word: no reply, closed
            silent.shutdown(socket.SHUT_WR)
            assert recv_all(silent) == b""
        with connect(svc.address) as other:  # an unknown message is answered at once, as by the seed's one read
            other.sendall(b"Hi")
            assert recv_all(other) == b"Hello from server"
        idle = connect(svc.address)
        try:
            idle.sendall(b"Hello fr")  # a prefix, then nothing: dropped at the idle timeout
            with connect(svc.address) as good:
                good.sendall(b"Hello from client")
                assert recv_all(good) == b"Hello from server"
            assert recv_all(idle) == b""
        finally:
            idle.close()
        log_lines.wait_for("Message from client: Hi")


def test_hello_udp_and_udp_hello_are_byte_exact(log_lines: LogLines) -> None:
    with running_service("hello", proto="udp") as hello, running_service("udp-hello", proto="udp") as udp_hello:
        assert udp_request(hello.address, b"Hello from client") == b"Hello from server"
        assert udp_request(udp_hello.address, b"I am a client\x00") == b"Hello Client\x00"
        # an oversized datagram is still one datagram: answered, text cut at the seed's 255 bytes
        assert udp_request(udp_hello.address, b"z" * 2000) == b"Hello Client\x00"
        assert udp_request(udp_hello.address, b"I am a client\x00") == b"Hello Client\x00"
    log_lines.wait_for("From client: I am a client")
    log_lines.wait_for("From client: " + "z" * 255)


# -- the example programs under the exec models (§12-2-3, §12-2-4) -----------------------


def test_han_under_exec_sends_exactly_its_text_then_eof() -> None:
    with running_service(program=(sys.executable, "-m", "inetkit.examples.han"), model="exec") as svc:
        for _ in range(2):
            with connect(svc.address) as sock:
                assert recv_all(sock) == b"welcome to server, from han!"


def test_han_linger_closes_the_connection_first() -> None:
    with running_service(program=(sys.executable, "-m", "inetkit.examples.han", "--linger", "1"), model="exec") as svc:
        started = time.monotonic()
        with connect(svc.address) as sock:
            assert recv_all(sock) == b"welcome to server, from han!"
        assert time.monotonic() - started < 0.9


def test_bit_under_exec_fd(capfd: pytest.CaptureFixture[str]) -> None:
    program = (sys.executable, "-m", "inetkit.examples.bit", "{fd}", "1")
    with running_service(program=program, model="exec-fd") as svc:
        # a silent client is dropped by bit's own timeout and does not disturb the next
        silent = connect(svc.address)
        try:
            with seed_client_exchange(svc.address, b"welcome to server, from bit\x00", SEED_TELNET) as sock:
                port = sock.getsockname()[1]
                assert recv_all(sock) == b""
            assert recv_exactly(silent, 28) == b"welcome to server, from bit\x00"
            assert recv_all(silent) == b""
        finally:
            silent.close()
        deadline = time.monotonic() + 5
        err = ""
        while time.monotonic() < deadline and f":{port} : I want a Telnet service" not in err:
            err += capfd.readouterr().err
            time.sleep(0.05)
    assert f"@@ [bit] from client 127.0.0.1:{port} : I want a Telnet service" in err


def test_bit_refuses_bad_usage() -> None:
    import subprocess

    for argv in ([], ["x"], ["3", "-1"], ["999"]):
        proc = subprocess.run([sys.executable, "-m", "inetkit.examples.bit", *argv], capture_output=True, text=True,
                              timeout=10)
        assert proc.returncode == 2, argv
        assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "inetkit.examples.han", "--linger", "x"], capture_output=True,
                          text=True, timeout=10)
    assert proc.returncode == 2 and "usage: han" in proc.stderr


def test_default_config_declares_the_seed_services() -> None:
    from inetkit.config.toml import load_default

    config = load_default()
    table = {(s.name, s.proto): (s.port, s.model, s.handler, dict(s.options)) for s in config.services}
    assert table[("greeting", "tcp")][:2] == (9001, "iterative")
    assert table[("greeting", "tcp")][3]["message"] == "welcome to network server!!!"
    assert table[("greeting-fork", "tcp")][:3] == (9002, "fork", "greeting")
    assert table[("greeting-fork", "tcp")][3]["message"] == "welcome to server"
    assert table[("udp-hello", "udp")][:2] == (9005, "datagram")
    assert table[("hello", "tcp")][:2] == (8081, "async")
    assert table[("hello", "udp")][:2] == (8081, "datagram")
    assert table[("han", "tcp")][:2] == (9003, "exec")
    assert table[("bit", "tcp")][:2] == (9004, "exec-fd")


# -- our clients against our services, every allowed model ------------------------------------


@pytest.mark.parametrize("model", GREETING_MODELS)
def test_our_clients_against_our_services(model: str) -> None:
    from inetkit.clients.echo import EchoClient
    from inetkit.clients.greeting import greet
    from inetkit.clients.hello import hello_tcp

    with running_service("greeting", model=model, options={"message": "welcome to server"}) as svc:
        result = greet(svc.address, SEED_HTTP, timeout=5)
        assert result.welcome.text == b"welcome to server" and result.welcome.terminated
    with running_service("hello", model=model) as svc:
        assert hello_tcp(svc.address, timeout=5) == b"Hello from server"
    with running_service("echo", model=model) as svc:
        with EchoClient(svc.address, 5) as client:
            assert client.exchange(b"x" * 100_000) == b"x" * 100_000  # recvn across many reads
            assert client.exchange(b"again") == b"again"
