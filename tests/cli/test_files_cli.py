"""``inetkit send/get/ls/push-get`` and ``inetkit run files`` as subprocesses:
what a script sees (exit codes, stdout, stderr), streaming with ``-``, resume,
and the progress line on a terminal."""

from __future__ import annotations

import os
import random
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from inetkit.testing.cutproxy import CutProxy
from inetkit.testing.running import stop_process

CLI = [sys.executable, "-m", "inetkit.cli.main"]


@contextmanager
def inetkit_run(*args: str) -> Iterator[tuple[str, int]]:
    """``inetkit run ARGS --port 0``; yields (host, port) once its ready line is printed."""
    proc = subprocess.Popen([*CLI, "run", *args, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(20)
        assert line and line[0].strip(), "inetkit run printed no ready line"
        _name, _proto, host, port, _model = line[0].split()
        yield host, int(port)
    finally:
        stop_process(proc)


def cli(*args: str, stdin: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=timeout)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def test_send_ls_get_round_trip_quiet_when_piped(root: Path, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(700_000)
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    with inetkit_run("files", "-o", f"root={root}", "-o", "allow_upload=true") as (host, port):
        done = cli("send", str(src), host, str(port))
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
        done = cli("send", "-", host, str(port), "--as", "from stdin.txt", stdin=b"streamed\n")
        assert done.returncode == 0, done.stderr
        done = cli("ls", host, str(port))
        assert done.returncode == 0 and done.stdout.decode().splitlines() == ["700000  data.bin", "     9  from stdin.txt"]
        out = tmp_path / "copy.bin"
        done = cli("get", host, str(port), "data.bin", "-o", str(out))
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"") and out.read_bytes() == data
        done = cli("get", host, str(port), "from stdin.txt", "-o", "-")
        assert done.returncode == 0 and done.stdout == b"streamed\n"
        into = tmp_path / "into"
        into.mkdir()
        done = cli("get", host, str(port), "from stdin.txt", "-o", str(into))  # a directory: keep the name
        assert done.returncode == 0 and (into / "from stdin.txt").read_bytes() == b"streamed\n"
    assert (root / "data.bin").read_bytes() == data


def test_every_failure_is_one_line_and_a_non_zero_exit(root: Path, tmp_path: Path) -> None:
    (root / "f").write_bytes(b"x")
    with inetkit_run("files", "-o", f"root={root}") as (host, port):
        cases = [
            (("get", host, str(port), "missing", "-o", str(tmp_path / "m")), 1, "404 no such file"),
            (("send", str(root / "f"), host, str(port), "--as", "g"), 1, "uploads are disabled"),
            (("get", host, str(port), "../etc/passwd", "-o", str(tmp_path / "p")), 1, "'..' leads outside the root"),
            (("send", str(tmp_path / "nope"), host, str(port)), 1, "No such file"),
            (("send", "-", host, str(port)), 2, "needs --as NAME"),
            (("get", host, str(port), "f", "-o", "-", "--resume"), 2, "--resume needs an output file"),
        ]
        for args, code, text in cases:
            done = cli(*args, stdin=b"")
            assert done.returncode == code, (args, done.stderr)
            err = done.stderr.decode()
            assert err.startswith("inetkit: ") and text in err and err.count("\n") == 1 and "Traceback" not in err
        assert not (tmp_path / "m").exists() and not (tmp_path / "m.part").exists()
    with inetkit_run("echo") as (host, port):  # not an FX1 server: it echoes our request
        done = cli("ls", host, str(port), "--timeout", "5")
        assert done.returncode == 76 and "protocol error during list: expected LIST" in done.stderr.decode()
    done = cli("ls", host, str(port), "--timeout", "5")  # nothing listens there any more
    assert done.returncode == 69 and "cannot connect" in done.stderr.decode()


def test_get_resume_after_a_cut(root: Path, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(2 << 20)
    (root / "f").write_bytes(data)
    out = tmp_path / "out"
    with inetkit_run("files", "-o", f"root={root}") as address:
        with CutProxy(address, random.Random(5).randrange(1000, len(data)), reset=False) as proxy:
            host, port = proxy.address
            first = cli("get", host, str(port), "f", "-o", str(out))
            assert first.returncode != 0 and b"--resume" in first.stderr and not out.exists()
            second = cli("get", host, str(port), "f", "-o", str(out), "--resume")
            assert second.returncode == 0, second.stderr
    assert out.read_bytes() == data


def _on_a_terminal(argv: list[str]) -> tuple[int, bytes]:
    """Run ``argv`` with stderr on a pseudo-terminal; (exit code, what it showed)."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        slave = -1
        text = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                text += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(10), text
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


def test_progress_and_summary_on_a_terminal(root: Path, tmp_path: Path) -> None:
    (root / "f").write_bytes(b"z" * 300_000)
    out = tmp_path / "out"
    src = tmp_path / "src"
    src.write_bytes(b"y" * 200_000)
    with inetkit_run("files", "-o", f"root={root}", "-o", "allow_upload=true") as (host, port):
        code, text = _on_a_terminal([*CLI, "get", host, str(port), "f", "-o", str(out), "--check", "blake3"])
        assert code == 0 and b"saved " in text and b"300000 bytes" in text and b"blake3 " in text
        assert b"verified (sha256 " in text  # the SHA-256 is announced, the BLAKE3 verified
        code, text = _on_a_terminal([*CLI, "get", host, str(port), "f", "-o", str(tmp_path / "s")])
        assert code == 0 and b"sha256 " in text and b"verified" in text and b"blake3" not in text  # the default
        code, text = _on_a_terminal([*CLI, "send", str(src), host, str(port), "--as", "up"])
        assert code == 0 and b"sent up: 200000 bytes" in text and b"verified" in text
        code, text = _on_a_terminal([*CLI, "get", host, str(port), "missing", "-o", str(tmp_path / "m")])
        assert code == 1 and b"404 no such file" in text
    assert out.read_bytes() == b"z" * 300_000 and (root / "up").read_bytes() == src.read_bytes()


def test_push_get_against_inetkit_run_file_push(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"pushed bytes\n" * 100)
    with inetkit_run("file-push", "-o", f"path={src}") as (host, port):
        done = cli("push-get", host, str(port))
        assert done.returncode == 0 and done.stdout == src.read_bytes()
        out = tmp_path / "out"
        done = cli("push-get", host, str(port), "-o", str(out))
        assert done.returncode == 0 and out.read_bytes() == src.read_bytes()
    done = cli("push-get", host, str(port), "-o", str(tmp_path / "gone"), "--timeout", "5")
    assert done.returncode == 69 and not (tmp_path / "gone").exists()


def test_serve_config_with_both_services(root: Path, tmp_path: Path) -> None:
    from inetkit.testing.running import running_daemon

    (root / "hello.txt").write_bytes(b"hello\n")
    config = f"""
[services.file-push]
port = 0
proto = "tcp"
model = "fork"

[services.files]
port = 0
proto = "tcp"
[services.files.options]
root = "{root}"
allow_upload = true
"""
    with running_daemon(config_text=config, tmp_path=tmp_path) as daemon:
        push_port, files_port = daemon.port("file-push"), daemon.port("files")
        done = cli("push-get", "127.0.0.1", str(push_port))
        assert done.returncode == 0 and b"file-push" in done.stdout  # the sample shipped with inetkit
        done = cli("send", "-", "127.0.0.1", str(files_port), "--as", "up.txt", stdin=b"up\n")
        assert done.returncode == 0, done.stderr
        done = cli("ls", "127.0.0.1", str(files_port))
        assert done.stdout.decode().split() == ["6", "hello.txt", "3", "up.txt"]
