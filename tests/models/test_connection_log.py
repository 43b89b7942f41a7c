"""One log line per connection, plain or JSON, from the real `inetkit serve`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inetkit.testing.net import connect, recv_exactly
from inetkit.testing.running import RunningDaemon, _wait_ready, stop_process

CONFIG = """
[services.aecho]
port = 0
handler = "echo"

[services.fecho]
port = 0
handler = "echo"
model = "fork"

[services.cat]
port = 0
model = "exec"
program = ["/bin/cat"]
"""


def serve_and_log(tmp_path: Path, *args: str) -> list[str]:
    config = tmp_path / "log.toml"
    config.write_text(CONFIG)
    log_path = tmp_path / "stderr.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inetkit.cli.main", "serve", "-c", str(config), "--no-control", *args],
            stdout=subprocess.PIPE, stderr=log_file, text=True,
        )
        daemon = RunningDaemon(proc)
        try:
            _wait_ready(daemon, 20.0)
            for name in ("aecho", "fecho", "cat"):
                with connect(("127.0.0.1", daemon.port(name))) as s:
                    s.sendall(b"12345")
                    assert recv_exactly(s, 5) == b"12345"
        finally:
            # the daemon drains before exiting: every child has written its line by then
            stop_process(proc)
    return log_path.read_text().splitlines()


def test_json_connection_log_has_every_field(tmp_path: Path) -> None:
    lines = [json.loads(line) for line in serve_and_log(tmp_path, "--log-format", "json")]
    conns = {rec["service"]: rec for rec in lines if "service" in rec}
    assert set(conns) == {"aecho", "fecho", "cat"}
    for name, rec in conns.items():
        assert set(rec) >= {"service", "peer", "model", "pid", "duration", "bytes_in", "bytes_out", "outcome"}
        assert rec["peer"].startswith("127.0.0.1:") and rec["outcome"] == "ok"
    assert conns["aecho"]["bytes_in"] == 5 and conns["aecho"]["bytes_out"] == 5
    assert conns["fecho"]["bytes_in"] == 5 and conns["fecho"]["pid"] != conns["aecho"]["pid"]  # the child's PID
    assert conns["cat"]["model"] == "exec" and conns["cat"]["pid"] != conns["aecho"]["pid"]


@pytest.mark.parametrize("flag", [[], ["--no-connection-log"]])
def test_plain_log_one_line_per_connection(tmp_path: Path, flag: list[str]) -> None:
    lines = serve_and_log(tmp_path, *flag)
    per_conn = [line for line in lines if " in=" in line and " out=" in line]
    assert len(per_conn) == (0 if flag else 3), lines
    assert not any("Traceback" in line for line in lines)
