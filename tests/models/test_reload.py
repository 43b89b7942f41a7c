"""SIGHUP reload of a real `inetkit serve`, under load: a changed, an
unchanged, an added and a removed service; no byte of an established
connection is lost, and a bad new config is refused while the old one runs."""

from __future__ import annotations

import json
import os
import random
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

BEFORE = """
[daemon]
grace = 5

[services.keep]
port = 0
handler = "echo"
model = "async"

[services.change]
port = 0
handler = "echo"
model = "async"

[services.fchange]
port = 0
handler = "echo"
model = "fork"
max_children = 16

[services.gone]
port = 0
handler = "echo"
model = "thread"
"""

AFTER = """
[daemon]
grace = 5

[services.keep]
port = 0
handler = "echo"
model = "async"

[services.change]
port = 0
handler = "echo"
model = "thread"

[services.fchange]
port = 0
handler = "echo"
model = "fork"
max_children = 8

[services.added]
port = 0
handler = "echo"
model = "async"
"""


def status(control: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "inetkit.cli.main", "status", "--json", "--socket", str(control)],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_generation(control: Path, generation: int, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = status(control)
        if data["generation"] >= generation or (data["last_reload"] and not data["last_reload"]["ok"]):
            return data
        assert time.monotonic() < deadline, "reload did not happen"
        time.sleep(0.05)


class Streamer(threading.Thread):
    """Echoes random chunks on one connection until told to stop; records any loss."""

    def __init__(self, address: tuple[str, int], seed: int) -> None:
        super().__init__(daemon=True)
        self.sock = connect(address)
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.rounds = 0
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 20
            while (not self.stop.is_set() or self.rounds < 20) and time.monotonic() < deadline:
                chunk = self.rng.randbytes(self.rng.randint(1, 4096))
                self.sock.sendall(chunk)
                if recv_exactly(self.sock, len(chunk)) != chunk:
                    raise AssertionError("echoed bytes differ")
                self.sent += len(chunk)
                self.rounds += 1
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.sock.close()


def test_sighup_reload_under_load_loses_no_byte(tmp_path: Path) -> None:
    control = tmp_path / "ctl.sock"
    with running_daemon("--control", str(control), config_text=BEFORE, tmp_path=tmp_path) as daemon:
        ports = {name: daemon.port(name) for name in ("keep", "change", "fchange", "gone")}
        streamers = [Streamer(("127.0.0.1", ports[name]), i) for i, name in enumerate(list(ports) * 2)]
        for s in streamers:
            s.start()
        # new connections keep arriving at the kept and the changed service during the reload
        refusals: list[str] = []
        hammer_stop = threading.Event()

        def hammer() -> None:
            count = 0
            while not hammer_stop.is_set() and count < 2000:
                for name in ("keep", "change", "fchange"):
                    try:
                        with connect(("127.0.0.1", ports[name]), timeout=5) as s:
                            s.sendall(b"h")
                            if recv_exactly(s, 1) != b"h":
                                refusals.append(name)
                    except (OSError, EOFError) as exc:
                        refusals.append(f"{name}: {exc!r}")
                    count += 1

        hammerer = threading.Thread(target=hammer, daemon=True)
        hammerer.start()
        try:
            deadline = time.monotonic() + 10
            while min(s.rounds for s in streamers) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            (tmp_path / "inetkit-test.toml").write_text(AFTER)
            os.kill(daemon.pid, signal.SIGHUP)
            data = wait_generation(control, 1)
            assert data["last_reload"]["ok"], data["last_reload"]
            assert data["last_reload"]["unchanged"] == ["keep/tcp"]
            assert sorted(data["last_reload"]["changed"]) == ["change/tcp", "fchange/tcp"]
            assert data["last_reload"]["added"] == ["added/tcp"]
            assert data["last_reload"]["removed"] == ["gone/tcp"]
            rounds_at_reload = [s.rounds for s in streamers]
            # keep streaming on every established connection for a while after the switch
            deadline = time.monotonic() + 10
            while any(s.rounds < r + 10 and s.is_alive() for s, r in zip(streamers, rounds_at_reload)):
                assert time.monotonic() < deadline, "streams stalled after the reload"
                time.sleep(0.01)
        finally:
            for s in streamers:
                s.stop.set()
            for s in streamers:
                s.join(25)
            hammer_stop.set()
            hammerer.join(25)
        for s in streamers:
            assert s.error is None, repr(s.error)
        # every connection kept streaming after the reload, byte for byte
        assert all(s.rounds >= r + 10 for s, r in zip(streamers, rounds_at_reload))
        assert refusals == []

        data = status(control)
        serving = {s["name"]: s for s in data["services"] if s["state"] == "serving"}
        assert set(serving) == {"keep", "change", "fchange", "added"}
        assert serving["change"]["model"] == "thread"
        # unchanged and changed services are still on their ports; the added one got its own
        for name in ("keep", "change", "fchange"):
            assert serving[name]["port"] == ports[name]
        with connect(("127.0.0.1", serving["added"]["port"])) as s:
            s.sendall(b"new")
            assert recv_exactly(s, 3) == b"new"
        with connect(("127.0.0.1", ports["change"])) as s:
            s.sendall(b"thread")
            assert recv_exactly(s, 6) == b"thread"
        # the removed service no longer accepts
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", ports["gone"]), timeout=2):
                    pass
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "removed service still accepts"
            time.sleep(0.05)


def test_invalid_new_config_is_refused_and_the_old_one_keeps_running(tmp_path: Path) -> None:
    control = tmp_path / "ctl.sock"
    with running_daemon("--control", str(control), config_text=BEFORE, tmp_path=tmp_path) as daemon:
        port = daemon.port("keep")
        held = connect(("127.0.0.1", port))
        try:
            (tmp_path / "inetkit-test.toml").write_text(AFTER.replace('model = "thread"', 'model = "warp-drive"'))
            os.kill(daemon.pid, signal.SIGHUP)
            data = wait_generation(control, 1)
            assert data["generation"] == 0
            assert data["last_reload"]["ok"] is False
            assert "warp-drive" in data["last_reload"]["error"]
            assert "inetkit-test.toml" in data["last_reload"]["error"]  # names the file and line
            names = sorted(s["name"] for s in data["services"])
            assert names == ["change", "fchange", "gone", "keep"]
            held.sendall(b"alive")
            assert recv_exactly(held, 5) == b"alive"
            with connect(("127.0.0.1", daemon.port("gone"))) as s:
                s.sendall(b"x")
                assert recv_exactly(s, 1) == b"x"
            assert daemon.process.poll() is None
        finally:
            held.close()


def test_a_service_renamed_on_its_fixed_port_takes_over_the_listener(tmp_path: Path) -> None:
    control = tmp_path / "ctl.sock"
    with socket.socket() as probe:  # a free port for a fixed-port config
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = f'[services.old-name]\nport = {port}\nhandler = "echo"\n'
    with running_daemon("--control", str(control), config_text=before, tmp_path=tmp_path) as daemon:
        held = connect(("127.0.0.1", port))
        try:
            held.sendall(b"a")
            assert recv_exactly(held, 1) == b"a"
            (tmp_path / "inetkit-test.toml").write_text(before.replace("old-name", "new-name"))
            os.kill(daemon.pid, signal.SIGHUP)
            data = wait_generation(control, 1)
            assert data["last_reload"]["ok"] and data["last_reload"]["added"] == ["new-name/tcp"]
            serving = [s for s in data["services"] if s["state"] == "serving"]
            assert [(s["name"], s["port"]) for s in serving] == [("new-name", port)]
            with connect(("127.0.0.1", port)) as s:
                s.sendall(b"b")
                assert recv_exactly(s, 1) == b"b"
            held.sendall(b"c")  # the connection the old name accepted goes on
            assert recv_exactly(held, 1) == b"c"
        finally:
            held.close()


def test_reload_rereads_an_inetd_conf(tmp_path: Path) -> None:
    control = tmp_path / "ctl.sock"
    conf = tmp_path / "inetd.conf"
    conf.write_text("0 stream tcp nowait root /bin/cat cat\n")
    with running_daemon("--inetd-conf", str(conf), "--control", str(control)) as daemon:
        held = connect(("127.0.0.1", daemon.port("port0")))
        try:
            held.sendall(b"before")
            assert recv_exactly(held, 6) == b"before"
            conf.write_text("# a comment line moves nothing\n0 stream tcp nowait root /bin/cat cat\n"
                            "0 stream tcp nowait root /bin/echo echo hi\n")
            os.kill(daemon.pid, signal.SIGHUP)
            data = wait_generation(control, 1)
            assert data["last_reload"]["ok"], data["last_reload"]
            assert data["last_reload"]["unchanged"] == ["port0/tcp"]
            assert data["last_reload"]["added"] == ["port0-2/tcp"]
            added = next(s for s in data["services"] if s["name"] == "port0-2")
            with connect(("127.0.0.1", added["port"])) as s:
                assert s.recv(10) == b"hi\n"
            held.sendall(b"after")
            assert recv_exactly(held, 5) == b"after"
        finally:
            held.close()
