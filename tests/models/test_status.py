"""`inetkit status` over the control socket of a real `inetkit serve`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from inetkit.testing.net import connect, recv_exactly
from inetkit.testing.running import running_daemon

CONFIG = """
[daemon]
grace = 2

[services.aecho]
port = 0
handler = "echo"
model = "async"

[services.fecho]
port = 0
handler = "echo"
model = "fork"

[services.cat]
port = 0
model = "exec"
program = ["/bin/cat"]

[services.bit]
port = 0
model = "exec-fd"
program = ["{python}", "-m", "inetkit.examples.bit", "{fd}"]
"""


def status(sock_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inetkit.cli.main", "status", "--socket", str(sock_path), *extra],
        capture_output=True, text=True, timeout=20,
    )


def status_json(sock_path: Path) -> dict[str, Any]:
    done = status(sock_path, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in data["services"]}


def parent_of(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text.rsplit(")", 1)[1].split()[1])


def test_status_lists_live_connections_with_child_pids(tmp_path: Path) -> None:
    control = tmp_path / "ctl.sock"
    with running_daemon("--control", str(control), config_text=CONFIG, tmp_path=tmp_path) as daemon:
        assert stat.S_IMODE(os.stat(control).st_mode) == 0o600
        socks = {name: connect(("127.0.0.1", daemon.port(name))) for name in ("aecho", "fecho", "cat")}
        bit = connect(("127.0.0.1", daemon.port("bit")))
        try:
            for name, s in socks.items():
                s.sendall(b"hello " + name.encode())
                assert recv_exactly(s, 6 + len(name)) == b"hello " + name.encode()
            assert bit.recv(64).startswith(b"welcome to server, from bit")
            ours = {name: list(s.getsockname()[:2]) for name, s in socks.items()}
            ours["bit"] = list(bit.getsockname()[:2])

            # fork children are reported by the worker over its events pipe: wait until seen
            deadline = time.monotonic() + 10
            while True:
                services = by_name(status_json(control))
                if all(any(c["peer"] == ours[n] for c in services[n]["connections"]) for n in ours) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            for name, peer in ours.items():
                conns = [c for c in services[name]["connections"] if c["peer"] == peer]
                assert len(conns) == 1, (name, services[name]["connections"])
                conn = conns[0]
                if name == "aecho":
                    assert conn["pid"] in (None, daemon.pid)
                else:
                    # a real child process serves it: the exec'd program, or the forked child
                    pid = conn["pid"]
                    assert pid and pid != daemon.pid and Path(f"/proc/{pid}").exists()
                    expected_parent = services[name]["stats"]["worker_pid"] if name == "fecho" else daemon.pid
                    assert parent_of(pid) == expected_parent
            counters = services["aecho"]["counters"]
            assert counters["accepted"] == 1 and counters["refused"] == 0
            assert services["fecho"]["counters"]["accepted"] == 1
            assert all(s["state"] == "serving" for s in services.values())

            plain = status(control)
            assert plain.returncode == 0, plain.stderr
            for name, (host, port) in ours.items():
                assert f"{host}:{port}" in plain.stdout
        finally:
            for s in [*socks.values(), bit]:
                s.close()

        # closed connections leave the list; their bytes are counted (fork: reported by the child)
        deadline = time.monotonic() + 10
        while True:
            services = by_name(status_json(control))
            if not any(s["connections"] for s in services.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not any(s["connections"] for s in services.values()), services
        assert services["aecho"]["counters"]["bytes_in"] == len(b"hello aecho")
        assert services["fecho"]["counters"]["bytes_out"] == len(b"hello fecho")
    assert not control.exists()  # removed at exit


def test_status_without_a_daemon_is_a_clear_error(tmp_path: Path) -> None:
    done = status(tmp_path / "nothing.sock")
    assert done.returncode == 69
    assert "cannot reach the daemon" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_second_daemon_does_not_steal_a_live_control_socket(tmp_path: Path) -> None:
    control = tmp_path / "ctl.sock"
    one = "[services.aecho]\nport = 0\nhandler = \"echo\"\n"
    with running_daemon("--control", str(control), config_text=one, tmp_path=tmp_path) as first:
        other = tmp_path / "other"
        other.mkdir()
        with running_daemon("--control", str(control), config_text=one, tmp_path=other):
            # the first daemon still answers on it
            assert status_json(control)["pid"] == first.pid
