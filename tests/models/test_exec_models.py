"""exec, exec-fd and UDP wait with real programs on loopback sockets."""

from __future__ import annotations

import os
import socket
import sys
import time

import pytest

from inetkit.config.schema import Limits
from inetkit.testing.net import connect, recv_all, recv_exactly
from inetkit.testing.running import running_service

ENV_DUMP = (
    "import os,sys\n"
    "keys=['PROTO','TCPREMOTEIP','TCPREMOTEPORT','TCPLOCALIP','TCPLOCALPORT','REMOTE_ADDR','REMOTE_PORT']\n"
    "sys.stdout.write(''.join(f'{k}={os.environ.get(k)}\\n' for k in keys)); sys.stdout.flush()\n"
)


def test_exec_cat_echoes_over_stdin_stdout() -> None:
    with running_service(program=("/bin/cat",), name="cat") as service:
        with connect(service.address) as sock:
            payload = b"through a real program\n" * 1000
            sock.sendall(payload)
            assert recv_exactly(sock, len(payload)) == payload
            sock.shutdown(socket.SHUT_WR)  # cat sees EOF on stdin and exits
            assert recv_all(sock) == b""


def test_exec_sets_the_ucspi_environment() -> None:
    with running_service(program=("{python}", "-c", ENV_DUMP), name="env") as service:
        with connect(service.address) as sock:
            text = recv_all(sock).decode()
            local_port = sock.getsockname()[1]
    env = dict(line.split("=", 1) for line in text.splitlines())
    assert env["PROTO"] == "TCP"
    assert env["TCPREMOTEIP"] == env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["TCPREMOTEPORT"] == env["REMOTE_PORT"] == str(local_port)
    assert env["TCPLOCALIP"] == "127.0.0.1" and env["TCPLOCALPORT"] == str(service.port)


def test_exec_argv_is_never_run_through_a_shell(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "pwned"
    program = ("{python}", "-c", "import sys; print(sys.argv[1:])", f"; touch {marker}", "$(id)")
    with running_service(program=program, name="argv") as service:
        with connect(service.address) as sock:
            out = recv_all(sock).decode()
    assert f"; touch {marker}" in out and "$(id)" in out
    assert not marker.exists()


def test_exec_fd_passes_the_descriptor_number() -> None:
    program = (
        "{python}", "-c",
        "import os,socket,sys; fd=int(sys.argv[1]); s=socket.socket(fileno=fd);"
        "s.sendall(b'fd=%d stdin-is-socket=%s' % (fd, str(os.isatty(0) or os.fstat(0).st_ino == os.fstat(fd).st_ino).encode()));"
        "s.close()",
        "{fd}",
    )
    with running_service(program=program, name="fdprog", model="exec-fd") as service:
        with connect(service.address) as sock:
            out = recv_all(sock)
    assert out.startswith(b"fd=") and out.endswith(b"stdin-is-socket=False")
    assert int(out.split(b"=")[1].split()[0]) >= 3


def test_bundled_han_and_bit_examples() -> None:
    with running_service(program=("{python}", "-m", "inetkit.examples.han"), name="han") as service:
        with connect(service.address) as sock:
            assert recv_all(sock) == b"welcome to server, from han!"
    program = ("{python}", "-m", "inetkit.examples.bit", "{fd}")
    with running_service(program=program, name="bit", model="exec-fd") as service:
        with connect(service.address) as sock:
            assert recv_exactly(sock, 28) == b"welcome to server, from bit\x00"
            sock.sendall(b"I want a Telnet service\x00".ljust(257, b"\x00"))
            assert recv_all(sock) == b""


def test_exec_connections_run_concurrently() -> None:
    # each program waits for one line; two connections are served at the same time
    program = ("{python}", "-c", "import sys; l=sys.stdin.readline(); sys.stdout.write(l.upper())")
    with running_service(program=program, name="upper") as service:
        first, second = connect(service.address), connect(service.address)
        with first, second:
            second.sendall(b"second\n")
            assert recv_all(second) == b"SECOND\n"
            first.sendall(b"first\n")
            assert recv_all(first) == b"FIRST\n"


def test_missing_program_is_logged_and_the_service_keeps_running() -> None:
    with running_service(program=("/nonexistent/program",), name="ghost") as service:
        for _ in range(2):
            with connect(service.address) as sock:
                assert recv_all(sock) == b""  # closed, no traceback on the wire
        assert service.call(lambda: service.runtime.counters.errors) >= 1


def test_exec_child_pid_is_tracked_while_live() -> None:
    program = ("{python}", "-c", "import sys; sys.stdin.readline()")
    with running_service(program=program, name="hold", limits=Limits(idle_timeout=10)) as service:
        with connect(service.address) as sock:
            deadline = time.monotonic() + 10
            pids: list = []
            while time.monotonic() < deadline and not pids:
                pids = service.call(lambda: [c.pid for c in service.runtime.live.values() if c.pid])
                time.sleep(0.02)
            assert pids and all(p != 0 for p in pids)
            sock.sendall(b"done\n")
            assert recv_all(sock) == b""


def test_udp_wait_gives_the_socket_to_the_program() -> None:
    # the program answers one datagram on the socket it was given on stdin, then exits
    program = (
        "{python}", "-c",
        "import socket; s=socket.socket(fileno=0); d,a=s.recvfrom(100); s.sendto(b'got '+d, a); s.detach()",
    )
    with running_service(program=program, name="udpprog", proto="udp") as service:
        for n in range(3):  # the daemon watches the socket again after each exit
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(10)
                client.sendto(b"ping%d" % n, service.address)
                assert client.recvfrom(100)[0] == b"got ping%d" % n


@pytest.mark.skipif(sys.platform != "linux", reason="pidfd reaping is Linux-only")
def test_no_zombie_after_many_exec_connections() -> None:
    import os

    with running_service(program=("/bin/true",), name="true") as service:
        for _ in range(30):
            with connect(service.address) as sock:
                assert recv_all(sock) == b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and service.call(lambda: len(service.runtime.live)):
            time.sleep(0.02)
        assert service.call(lambda: len(service.runtime.live)) == 0
    # no child of this process is left a zombie
    me = os.getpid()
    from pathlib import Path

    zombies = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == me and fields[0] == "Z":
                zombies.append(stat.split(")", 1)[0])
    assert zombies == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="dropping privileges needs root")
def test_exec_drops_to_the_configured_user() -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    program = ("/usr/bin/id", "-u")
    with running_service(program=program, name="whoami", user="nobody") as service:
        with connect(service.address) as sock:
            assert recv_all(sock).strip() == str(nobody.pw_uid).encode()
