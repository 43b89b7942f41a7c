"""SIGTERM drain of a real `inetkit serve`: in-flight transfers complete
within the grace period, then whatever is left (exec'd children, fork
workers and their children, in-daemon connections) is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from inetkit.testing.net import connect, recv_exactly
from inetkit.testing.running import running_daemon

SERVICES = """
[services.aecho]
port = 0
handler = "echo"
model = "async"

[services.techo]
port = 0
handler = "echo"
model = "thread"

[services.fecho]
port = 0
handler = "echo"
model = "fork"

[services.wecho]
port = 0
handler = "echo"
model = "async"
workers = 2

[services.cat]
port = 0
model = "exec"
program = ["/bin/cat"]
"""
NAMES = ("aecho", "techo", "fecho", "wecho", "cat")


def status(control: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "inetkit.cli.main", "status", "--json", "--socket", str(control)],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_lets_in_flight_transfers_finish(tmp_path: Path) -> None:
    config = "[daemon]\ngrace = 8\n" + SERVICES
    with running_daemon("--no-control", config_text=config, tmp_path=tmp_path) as daemon:
        socks = {name: connect(("127.0.0.1", daemon.port(name))) for name in NAMES}
        results: dict[str, int] = {}
        errors: list[str] = []
        signalled = threading.Event()
        reached = {name: threading.Event() for name in NAMES}

        def transfer(name: str, sock: socket.socket) -> None:
            # a transfer spanning the SIGTERM: ~1.2 s of echoed chunks after it
            i = -1
            try:
                total = 0
                for i in range(60):
                    chunk = (b"%s-%04d|" % (name.encode(), i)) * 50
                    sock.sendall(chunk)
                    assert recv_exactly(sock, len(chunk)) == chunk
                    total += len(chunk)
                    if i == 10:  # well under way: now the daemon is told to stop
                        reached[name].set()
                        signalled.wait(10)
                    time.sleep(0.02)
                results[name] = total
            except BaseException as exc:
                errors.append(f"{name}: {exc!r} at chunk {i}")
            finally:
                sock.close()

        threads = [threading.Thread(target=transfer, args=item) for item in socks.items()]
        for t in threads:
            t.start()
        for name in NAMES:
            assert reached[name].wait(20), f"{name} transfer did not start"
        started = time.monotonic()
        os.kill(daemon.pid, signal.SIGTERM)
        signalled.set()
        # new clients are no longer accepted once the listeners are closed
        deadline = time.monotonic() + 5
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                with socket.create_connection(("127.0.0.1", daemon.port("aecho")), timeout=1):
                    time.sleep(0.02)
            except OSError:
                refused = True
        assert refused
        for t in threads:
            t.join(20)
        assert errors == []
        # every byte of every transfer came back
        assert results == {n: sum(len(b"%s-%04d|" % (n.encode(), i)) * 50 for i in range(60)) for n in NAMES}
        # the daemon exits as soon as the last transfer is done, well inside the grace period
        assert daemon.process.wait(10) == 0
        assert time.monotonic() - started < 7.0


def test_after_the_grace_period_children_are_stopped(tmp_path: Path) -> None:
    control = tmp_path / "ctl.sock"
    config = "[daemon]\ngrace = 1\n" + SERVICES
    with running_daemon("--control", str(control), config_text=config, tmp_path=tmp_path) as daemon:
        socks = {name: connect(("127.0.0.1", daemon.port(name))) for name in NAMES}
        try:
            for name, s in socks.items():
                s.sendall(b"held")
                assert recv_exactly(s, 4) == b"held"
            deadline = time.monotonic() + 10
            while True:
                services = {s["name"]: s for s in status(control)["services"]}
                pids = {n: [c["pid"] for c in services[n]["connections"]] for n in ("fecho", "cat")}
                if all(p and p[0] for p in pids.values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            children = [p[0] for p in pids.values()]
            workers = [v for n in ("fecho", "wecho") for k, v in services[n]["stats"].items() if k.startswith("worker_pid")]
            assert len(children) == 2 and len(workers) == 3
            assert all(alive(p) for p in children + workers)
            started = time.monotonic()
            os.kill(daemon.pid, signal.SIGTERM)
            assert daemon.process.wait(15) == 0
            took = time.monotonic() - started
            assert 0.9 < took < 6.0, took  # waited for the grace period, then stopped the rest
            for pid in children + workers:
                deadline = time.monotonic() + 5
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert not alive(pid), pid
            for name, s in socks.items():
                s.settimeout(5)
                try:
                    assert s.recv(10) == b"", name
                except ConnectionResetError:
                    pass
        finally:
            for s in socks.values():
                s.close()
