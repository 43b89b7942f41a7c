"""The seed client commands (greet, udp, hello, echo, demo) as subprocesses:
what they print, the exact bytes they send (a raw socket peer records them),
and their exit status on refusal, timeout and short replies."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from inetkit.proto.greeting import padded_message
from inetkit.testing.running import running_service

SEED_HTTP = padded_message("I want a HTTP service")


def inetkit(*args: str, stdin: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inetkit.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout)


class RawPeer:
    """A one-connection TCP server in a thread: ``script(conn)`` talks, then
    everything the client sent until EOF is kept in ``received``."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.received = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                self.script(conn)
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass

    def close(self) -> None:
        self.thread.join(15)
        self.listener.close()


@contextmanager
def raw_peer(script: Callable[[socket.socket], None]) -> Iterator[RawPeer]:
    peer = RawPeer(script)
    try:
        yield peer
    finally:
        peer.close()


def split_send(*parts: bytes, eof: bool = False) -> Callable[[socket.socket], None]:
    """Send ``parts`` as separate segments; ``eof``: then half-close."""

    def script(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in parts:
            conn.sendall(part)
            time.sleep(0.02)
        if eof:
            conn.shutdown(socket.SHUT_WR)

    return script


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- greet ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["iterative", "fork"])
def test_greet_against_our_greeting_service(model: str) -> None:
    message = "welcome to network server!!!" if model == "iterative" else "welcome to server"
    with running_service("greeting", model=model, options={"message": message}) as svc:
        proc = inetkit("greet", "127.0.0.1", str(svc.port))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"** From server : {message}\n"


def test_greet_sends_the_seed_clients_exact_257_bytes() -> None:
    with raw_peer(split_send(b"welcome to ", b"network server!!!\x00")) as peer:
        proc = inetkit("greet", "127.0.0.1", str(peer.port))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "** From server : welcome to network server!!!\n"
    assert peer.received == SEED_HTTP


def test_greet_message_and_size_options() -> None:
    with raw_peer(split_send(b"hi\x00")) as peer:
        proc = inetkit("greet", "127.0.0.1", str(peer.port), "--message", "hello there", "--size", "0")
    assert proc.returncode == 0, proc.stderr
    assert peer.received == b"hello there\x00"


def test_greet_han_and_bit_sections() -> None:
    han = (sys.executable, "-m", "inetkit.examples.han")
    with running_service(program=han, model="exec") as svc:
        proc = inetkit("greet", "127.0.0.1", str(svc.port), "--seed", "12-2-3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "==> create socket\n==> connect server\n==>from server : welcome to server, from han!\n"
    with raw_peer(split_send(b"welcome to server, from bit\x00")) as peer:
        proc = inetkit("greet", "127.0.0.1", str(peer.port), "--seed", "12-2-4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "==> create socket\n==> connect server\n==>from server : welcome to server, from bit\n"
    assert peer.received == padded_message("I want a Telnet service")


def test_greet_failures_exit_non_zero_with_a_message() -> None:
    proc = inetkit("greet", "127.0.0.1", str(free_port()))
    assert proc.returncode == 69 and "refused" in proc.stderr
    with raw_peer(lambda conn: time.sleep(1.5)) as peer:  # accepts, says nothing
        proc = inetkit("greet", "127.0.0.1", str(peer.port), "--timeout", "0.5")
    assert proc.returncode == 75 and "timed out" in proc.stderr
    with raw_peer(split_send(b"welc", eof=True)) as peer:  # a greeting cut short by EOF
        proc = inetkit("greet", "127.0.0.1", str(peer.port))
    assert proc.returncode == 1 and "short reply" in proc.stderr
    proc = inetkit("greet", "127.0.0.1", "70000")
    assert proc.returncode == 2 and "out of range" in proc.stderr
    for p in (proc,):
        assert "Traceback" not in p.stderr


# -- udp ------------------------------------------------------------------------------------


def test_udp_against_udp_hello_and_exact_datagram() -> None:
    with running_service("udp-hello", proto="udp") as svc:
        proc = inetkit("udp", "127.0.0.1", str(svc.port))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "** From Server : Hello Client\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind(("127.0.0.1", 0))
        raw.settimeout(10)
        child = subprocess.Popen([sys.executable, "-m", "inetkit.cli.main", "udp", "127.0.0.1",
                                  str(raw.getsockname()[1])], stdout=subprocess.PIPE, text=True)
        try:
            data, addr = raw.recvfrom(65535)
            raw.sendto(b"Hello Client\x00", addr)
            out, _ = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert data == b"I am a client\x00"
    assert child.returncode == 0 and out == "** From Server : Hello Client\n"


def test_udp_retries_then_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        proc = inetkit("udp", "127.0.0.1", str(silent.getsockname()[1]), "hi", "--timeout", "0.2", "--retries", "2")
        silent.settimeout(1)
        got = [silent.recv(100) for _ in range(3)]
    assert proc.returncode == 75 and "after 3 tries" in proc.stderr
    assert got == [b"hi\x00"] * 3


def test_udp_refused() -> None:
    proc = inetkit("udp", "127.0.0.1", str(free_port(socket.SOCK_DGRAM)), "--timeout", "1")
    assert proc.returncode == 69 and "refused" in proc.stderr


# -- hello ----------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_hello_against_our_hello_service(proto: str) -> None:
    with running_service("hello", proto=proto) as svc:
        proc = inetkit("hello", "127.0.0.1", str(svc.port), *(["--udp"] if proto == "udp" else []))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello message sent\nMessage from server: Hello from server\n"


def test_hello_sends_exactly_the_seed_bytes_and_reads_a_split_reply() -> None:
    def script(conn: socket.socket) -> None:
        data = b""
        while len(data) < 17:
            data += conn.recv(100)
        assert data == b"Hello from client"
        split_send(b"Hello fr", b"om server")(conn)
        peer.received = data  # what the client sent before waiting for the reply

    with raw_peer(script) as peer:
        proc = inetkit("hello", "127.0.0.1", str(peer.port))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello message sent\nMessage from server: Hello from server\n"
    assert peer.received == b"Hello from client"


def test_hello_no_reply_is_a_short_reply() -> None:
    with raw_peer(lambda conn: conn.shutdown(socket.SHUT_WR)) as peer:
        proc = inetkit("hello", "127.0.0.1", str(peer.port))
    assert proc.returncode == 1 and "without a reply" in proc.stderr


# -- echo -----------------------------------------------------------------------------------


def test_echo_piped_against_the_echo_service() -> None:
    with running_service("echo", model="async") as svc:
        proc = inetkit("echo", "127.0.0.1", str(svc.port), stdin="hello\nworld, 2\n\nnot sent\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "[TCP client] 5 bytes sent\n[TCP client] 5 bytes received\n[received data] hello\n"
        "[TCP client] 8 bytes sent\n[TCP client] 8 bytes received\n[received data] world, 2\n"
    )


def test_echo_ends_at_eof_and_sends_lines_without_newline() -> None:
    def script(conn: socket.socket) -> None:
        data = b""
        while len(data) < 6:
            data += conn.recv(100)
        conn.sendall(b"ab")  # the echo comes back in pieces: recvn must wait for all
        time.sleep(0.05)
        conn.sendall(data[2:])
        peer.received = data

    with raw_peer(script) as peer:
        proc = inetkit("echo", "127.0.0.1", str(peer.port), stdin="abcdef")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("[received data] abcdef\n")


def test_echo_short_reply() -> None:
    def script(conn: socket.socket) -> None:
        conn.recv(100)
        conn.sendall(b"ab")
        conn.shutdown(socket.SHUT_WR)

    with raw_peer(script) as peer:
        proc = inetkit("echo", "127.0.0.1", str(peer.port), stdin="abcdef\n")
    assert proc.returncode == 1
    assert "closed after 2 of 6 bytes" in proc.stderr and "Traceback" not in proc.stderr


def test_help_texts_name_the_seed_sections() -> None:
    for command, section in (("greet", "§12-2-1"), ("udp", "§12-3"), ("hello", "002"), ("echo", "004"),
                             ("demo", "§12-2-1")):
        proc = inetkit(command, "--help")
        assert proc.returncode == 0 and section in proc.stdout.replace("\n", " "), command


# -- demo -----------------------------------------------------------------------------------


def test_demo_runs_every_scenario_quickly() -> None:
    started = time.monotonic()
    proc = inetkit("demo", timeout=40)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < 30
    out = proc.stdout
    for expected in (
        "client | ** From server : welcome to network server!!!",
        "from client: I want a HTTP service",
        "client | ** From server : welcome to server",
        "client | ==>from server : welcome to server, from han!",
        "client | ==>from server : welcome to server, from bit",
        "@@ [bit] from client 127.0.0.1:",
        "From client: I am a client",
        "client | ** From Server : Hello Client",
        "client | Message from server: Hello from server",
        "client | [TCP client] 13 bytes received",
        "inetkit.examples.han --linger 1",
        "inetkit.examples.bit ",
        "inetkit.worker --model fork",
    ):
        assert expected in out, expected
    assert "FAILED" not in out
    # the fork scenario's process list shows the worker and, under it, the child
    ps = [line for line in out.splitlines() if "ps |" in line and "--model fork" in line]
    pids = {line.split("|", 1)[1].split()[0]: line.split("|", 1)[1].split()[1] for line in ps}
    assert any(ppid in pids for ppid in pids.values()), ps


# -- the embedded default config, served for real ---------------------------------------------


def test_default_config_seed_services_answer_our_clients() -> None:
    from inetkit.testing.running import running_daemon

    with running_daemon("--any-port", "--no-control") as daemon:
        def port(name: str, proto: str = "tcp") -> str:
            return str(daemon.port(name, proto))

        checks = [
            (("greet", "127.0.0.1", port("greeting")), "** From server : welcome to network server!!!\n"),
            (("greet", "127.0.0.1", port("greeting-fork")), "** From server : welcome to server\n"),
            (("greet", "127.0.0.1", port("han"), "--seed", "12-2-3"),
             "==> create socket\n==> connect server\n==>from server : welcome to server, from han!\n"),
            (("greet", "127.0.0.1", port("bit"), "--seed", "12-2-4"),
             "==> create socket\n==> connect server\n==>from server : welcome to server, from bit\n"),
            (("udp", "127.0.0.1", port("udp-hello", "udp")), "** From Server : Hello Client\n"),
            (("hello", "127.0.0.1", port("hello")), "Hello message sent\nMessage from server: Hello from server\n"),
            (("hello", "127.0.0.1", port("hello", "udp"), "--udp"),
             "Hello message sent\nMessage from server: Hello from server\n"),
        ]
        for argv, expected in checks:
            proc = inetkit(*argv)
            assert (proc.returncode, proc.stdout) == (0, expected), (argv, proc.stderr)
        proc = inetkit("echo", "127.0.0.1", port("seed-echo"), stdin="seed echo\n")
        assert proc.returncode == 0 and proc.stdout.endswith("[received data] seed echo\n"), proc.stderr
