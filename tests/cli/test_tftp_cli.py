"""`inetkit tftp get|put`, `inetkit udp-send` and `inetkit run tftp` as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from inetkit.testing.running import running_service, stop_process


def inetkit(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inetkit.cli.main", *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_get_put_quiet_when_piped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(70_000)
    (root / "f.bin").write_bytes(data)
    with running_service("tftp", proto="udp", options={"root": str(root), "allow_create": True}) as svc:
        server = f"{svc.address[0]}:{svc.address[1]}"
        r = inetkit("tftp", "get", server, "f.bin", str(tmp_path / "got"), "--blksize", "1468", "--windowsize", "8")
        assert r.returncode == 0 and r.stdout == "" and r.stderr == ""  # piped: no progress bar
        assert (tmp_path / "got").read_bytes() == data
        r = inetkit("tftp", "put", str(tmp_path / "got"), server, "up.bin", "-v")
        assert r.returncode == 0 and "70000 bytes" in r.stderr
        assert (root / "up.bin").read_bytes() == data


def test_server_errors_explained_and_nothing_left(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "exists").write_bytes(b"x")
    with running_service("tftp", proto="udp", options={"root": str(root)}) as svc:
        server = f"{svc.address[0]}:{svc.address[1]}"
        local = tmp_path / "missing"
        r = inetkit("tftp", "get", server, "missing", str(local))
        assert r.returncode == 1 and "file not found" in r.stderr and "does not exist" in r.stderr
        assert list(tmp_path.iterdir()) == [root]  # no partial LOCAL, no temporary file
        r = inetkit("tftp", "put", str(root / "exists"), server, "new")
        assert r.returncode == 1 and "access violation" in r.stderr and "allow_create" in r.stderr


def test_usage_errors() -> None:
    assert inetkit("tftp", "get", "127.0.0.1:1", "x", "--blksize", "7").returncode == 2
    assert inetkit("tftp", "get", "127.0.0.1:1", "x", "--windowsize", "0").returncode == 2
    r = inetkit("tftp", "put", "/nonexistent/file", "127.0.0.1:1")
    assert r.returncode == 1 and "no such file" in r.stderr


def test_udp_send_warns_and_points_to_tftp(tmp_path: Path) -> None:
    src = tmp_path / "send_file.txt"
    src.write_bytes(b"seed data " * 300)
    out = tmp_path / "in"
    with running_service("udp-file", proto="udp", options={"directory": str(out)}) as svc:
        r = inetkit("udp-send", str(src), svc.address[0], str(svc.address[1]))
        assert r.returncode == 0, r.stderr
        assert "File sent successfully." in r.stdout
        assert "cannot" in r.stderr or "silently corrupts" in r.stderr
        assert "inetkit tftp put" in r.stderr
    (received,) = out.iterdir()
    assert received.read_bytes() == src.read_bytes()


def test_run_tftp_from_a_script(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"scripted")
    proc = subprocess.Popen([sys.executable, "-m", "inetkit.cli.main", "run", "tftp", "--proto", "udp", "--port", "0",
                             "-o", f"root={tmp_path}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        name, proto, host, port, model = proc.stdout.readline().split()
        assert (name, proto, model) == ("tftp", "udp", "datagram")
        r = inetkit("tftp", "get", f"{host}:{port}", "f", str(tmp_path / "g"))
        assert r.returncode == 0 and (tmp_path / "g").read_bytes() == b"scripted"
    finally:
        stop_process(proc)
        if proc.stdout:
            proc.stdout.close()
