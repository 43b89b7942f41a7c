"""The seed chapter's own C programs (restated in ``seed_c/`` with the typos fixed,
127.0.0.1 and the port from argv) against inetkit, in both directions:
the seed client against our service, our client against the seed server.

Compiled with gcc into a temporary folder; skipped when gcc is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from inetkit.testing.logs import LogLines, captured_log
from inetkit.testing.running import running_service, stop_process

pytestmark = pytest.mark.interop

SOURCES = Path(__file__).parent / "seed_c"
PROGRAMS = ("greet_server", "greet_client", "exec_server", "han", "bit", "udp_hello", "hello", "echo")


@pytest.fixture(scope="module")
def seed_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: the seed C programs cannot be built")
    out = tmp_path_factory.mktemp("seed_c")
    for name in PROGRAMS:
        subprocess.run([gcc, "-Wall", "-Werror", "-O1", "-o", str(out / name), str(SOURCES / f"{name}.c")],
                       check=True, capture_output=True, timeout=60)
    return out


def run_c(binary: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True, timeout=20)


def inetkit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inetkit.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=20)


@contextmanager
def c_server(binary: Path, *args: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Start a seed C server (``args`` give port 0) and yield (its port, the
    process); it prints 'listening on PORT' once bound (readiness, not a sleep)."""
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(10)
        assert line and line[0].startswith("listening on "), f"C server did not start: {line!r}"
        yield int(line[0].split()[-1]), proc
    finally:
        stop_process(proc)


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Wait for a C server that serves a fixed number of clients; its output."""
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return out, err


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    with captured_log("inetkit") as lines:
        yield lines


# -- §12-2-1 / §12-2-2 greeting ---------------------------------------------------------------


@pytest.mark.parametrize("model", ["iterative", "fork", "thread", "async"])
def test_seed_client_against_our_greeting(seed_bin: Path, model: str, log_lines: LogLines) -> None:
    with running_service("greeting", model=model) as svc:
        for _ in range(2):  # the seed demo runs the client repeatedly
            proc = run_c(seed_bin / "greet_client", str(svc.port), "http")
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout == "** From server : welcome to network server!!!\n"
        if model != "fork":  # a forked child logs from its own process
            assert log_lines.wait_for("from client: I want a HTTP service")


def test_seed_client_against_our_fork_greeting(seed_bin: Path) -> None:
    with running_service("greeting", model="fork", options={"message": "welcome to server"}) as svc:
        proc = run_c(seed_bin / "greet_client", str(svc.port), "http")
    assert proc.returncode == 0 and proc.stdout == "** From server : welcome to server\n"


@pytest.mark.parametrize("mode, message", [("iterative", "welcome to network server!!!"), ("fork", "welcome to server")])
def test_our_greet_against_the_seed_server(seed_bin: Path, mode: str, message: str) -> None:
    with c_server(seed_bin / "greet_server", "0", message, mode, "2") as (port, server):
        for _ in range(2):
            proc = inetkit("greet", "127.0.0.1", str(port))
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout == f"** From server : {message}\n"
        out, _ = finish(server)
    assert out.count("*** send a message to client(127.0.0.1)") == 2
    assert out.count("** from client : I want a HTTP service\n") == 2


# -- §12-2-3 han, §12-2-4 bit ---------------------------------------------------------------------

ARROWS = "==> create socket\n==> connect server\n"


def test_seed_han_client_against_our_han(seed_bin: Path) -> None:
    with running_service(program=(sys.executable, "-m", "inetkit.examples.han"), model="exec") as svc:
        proc = run_c(seed_bin / "greet_client", str(svc.port), "han")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ARROWS + "==>from server : welcome to server, from han!\n"


def test_our_greet_against_the_seed_exec_server_and_han(seed_bin: Path) -> None:
    with c_server(seed_bin / "exec_server", "0", "stdio", str(seed_bin / "han"), "1") as (port, server):
        proc = inetkit("greet", "127.0.0.1", str(port), "--seed", "12-2-3")
        finish(server)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ARROWS + "==>from server : welcome to server, from han!\n"


def test_seed_bit_client_against_our_bit(seed_bin: Path, capfd: pytest.CaptureFixture[str]) -> None:
    program = (sys.executable, "-m", "inetkit.examples.bit", "{fd}")
    with running_service(program=program, model="exec-fd") as svc:
        proc = run_c(seed_bin / "greet_client", str(svc.port), "telnet")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ARROWS + "==>from server : welcome to server, from bit\n"
        err, deadline = "", time.monotonic() + 5
        while "I want a Telnet service" not in err and time.monotonic() < deadline:
            err += capfd.readouterr().err
            time.sleep(0.05)
    assert "@@ [bit] from client 127.0.0.1:" in err and ": I want a Telnet service" in err


def test_our_greet_against_the_seed_exec_fd_server_and_bit(seed_bin: Path) -> None:
    with c_server(seed_bin / "exec_server", "0", "fd", str(seed_bin / "bit"), "1") as (port, server):
        proc = inetkit("greet", "127.0.0.1", str(port), "--seed", "12-2-4")
        _, err = finish(server)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ARROWS + "==>from server : welcome to server, from bit\n"
    assert "@@ [bit] from client : I want a Telnet service" in err


# -- §12-3 UDP ---------------------------------------------------------------------------------------


def test_seed_udp_client_against_our_udp_hello(seed_bin: Path, log_lines: LogLines) -> None:
    with running_service("udp-hello", proto="udp") as svc:
        proc = run_c(seed_bin / "udp_hello", "client", str(svc.port))
        assert log_lines.wait_for("From client: I am a client")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "** From Server : Hello Client\n"


def test_our_udp_against_the_seed_udp_server(seed_bin: Path) -> None:
    with c_server(seed_bin / "udp_hello", "server", "0", "1") as (port, server):
        client = inetkit("udp", "127.0.0.1", str(port))
        out, _ = finish(server)
    assert client.returncode == 0, client.stderr
    assert client.stdout == "** From Server : Hello Client\n"
    assert out == "** From client : I am a client\n"


# -- 002 hello ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_seed_hello_client_against_our_hello(seed_bin: Path, proto: str, log_lines: LogLines) -> None:
    with running_service("hello", proto=proto) as svc:
        proc = run_c(seed_bin / "hello", "client", proto, str(svc.port))
        assert log_lines.wait_for("Message from client: Hello from client")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello message sent\nMessage from server: Hello from server\n"


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_our_hello_against_the_seed_hello_server(seed_bin: Path, proto: str) -> None:
    with c_server(seed_bin / "hello", "server", proto, "0") as (port, server):
        client = inetkit("hello", "127.0.0.1", str(port), *(["--udp"] if proto == "udp" else []))
        out, _ = finish(server)
    assert client.returncode == 0, client.stderr
    assert client.stdout == "Hello message sent\nMessage from server: Hello from server\n"
    assert out == "Message from client: Hello from client\nHello message sent\n"


# -- 004 echo with recvn --------------------------------------------------------------------------------

ECHO_LINES = "hello\nsocket programming\n\n"
ECHO_OUT = (
    "[TCP client] 5 bytes sent\n[TCP client] 5 bytes received\n[received data] hello\n"
    "[TCP client] 18 bytes sent\n[TCP client] 18 bytes received\n[received data] socket programming\n"
)


def test_seed_echo_client_against_our_echo(seed_bin: Path) -> None:
    with running_service("echo", model="async") as svc:
        proc = run_c(seed_bin / "echo", "client", str(svc.port), stdin=ECHO_LINES)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ECHO_OUT


def test_our_echo_against_the_seed_echo_server(seed_bin: Path) -> None:
    with c_server(seed_bin / "echo", "server", "0") as (port, server):
        client = inetkit("echo", "127.0.0.1", str(port), stdin=ECHO_LINES)
        out, _ = finish(server)
    assert client.returncode == 0, client.stderr
    assert client.stdout == ECHO_OUT
    assert "] hello\n" in out and "] socket programming\n" in out and "[TCP server] client closed" in out
