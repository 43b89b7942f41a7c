"""The `inetkit` command itself: help, check, run, serve (as subprocesses)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from inetkit.cli.main import COMMANDS
from inetkit.config.toml import load_default
from inetkit.testing.net import connect, recv_exactly
from inetkit.testing.running import running_daemon, stop_process

INETKIT = [sys.executable, "-m", "inetkit.cli.main"]


def inetkit(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INETKIT, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_lists_every_command() -> None:
    result = inetkit("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


def test_no_command_is_a_usage_error_and_unknown_command_too() -> None:
    assert inetkit().returncode == 2
    result = inetkit("frobnicate")
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr


def test_cli_entry_imports_nothing_heavy() -> None:
    code = "import sys, inetkit.cli.main as m; m._usage(); print(sorted(k for k in ('asyncio','uvloop','rich','prompt_toolkit') if k in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_complete_help(command: str) -> None:
    result = inetkit(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: inetkit {command}")
    assert COMMANDS[command][1].split()[0].lower() in result.stdout.lower()  # a description is shown


def test_check_prints_the_default_table() -> None:
    result = inetkit("check")
    assert result.returncode == 0
    assert "services, valid" in result.stdout
    assert "han" in result.stdout and "127.0.0.1:9003" in result.stdout and "exec-fd" in result.stdout


def test_check_reports_file_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text('[services.e]\nport = 7\nmodel = "forking"\n')
    result = inetkit("check", "-c", str(bad))
    assert result.returncode == 78
    assert f"{bad}:3" in result.stderr and "not a tcp model" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_bad_config_and_binds_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[services.ok]\nport = {port}\nhandler = "echo"\n[services.broken]\nport = 1\nhandler = "nope"\n')
    result = inetkit("serve", "-c", str(bad))
    assert result.returncode == 78 and "unknown service 'nope'" in result.stderr
    with socket.socket() as again:  # the good service's port was never bound
        again.bind(("127.0.0.1", port))


def test_run_prints_the_port_and_serves() -> None:
    proc = subprocess.Popen([*INETKIT, "run", "echo", "--port", "0", "--model", "thread"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        name, proto, host, port, model = proc.stdout.readline().split()
        assert (name, proto, host, model) == ("echo", "tcp", "127.0.0.1", "thread")
        with connect((host, int(port))) as sock:
            sock.sendall(b"ad hoc")
            assert recv_exactly(sock, 6) == b"ad hoc"
    finally:
        assert stop_process(proc) == 0


def test_serve_default_config_binds_every_service() -> None:
    expected = {(s.name, s.proto) for s in load_default().services}
    with running_daemon("--any-port") as daemon:
        assert set(daemon.ports) == expected
        assert all(port > 0 for port in daemon.ports.values())
        with connect(("127.0.0.1", daemon.port("echo"))) as sock:
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
        with connect(("127.0.0.1", daemon.port("han"))) as sock:
            assert recv_exactly(sock, 28) == b"welcome to server, from han!"


def test_port_in_use_is_reported_per_service_and_strict_makes_it_fatal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "c.toml"
        config.write_text(f'[services.busy]\nport = {port}\nhandler = "echo"\n[services.free]\nport = 0\nhandler = "echo"\n')
        with running_daemon("-c", str(config)) as daemon:
            text = "".join(daemon.stdout_lines)
            assert "busy" in text and "FAILED" in text and "in use" in text
            assert ("free", "tcp") in daemon.ports
        result = inetkit("serve", "--strict", "-c", str(config))
        assert result.returncode == 69
        assert f"{config}:1" in result.stderr and "busy/tcp" in result.stderr
