"""The live fuzzer in a short bounded mode, against the real ``inetkit serve``.

Every default service gets random and mutated bytes, truncations, half-open
connections, resets and abrupt closes; afterwards each must still answer a
correct client and the daemon must be back within a small fd/RSS bound
(``inetkit.testing.fuzz``).  Longer runs: ``python -m inetkit.testing.fuzz``.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from inetkit.config.toml import load_default
from inetkit.testing import fuzz


def test_every_default_service_has_a_probe() -> None:
    """A new default service without a correct-client probe fails here, so the
    fuzzer, the soak and the flood tests cannot silently skip it."""
    missing = [f"{s.name}/{s.proto}" for s in load_default().services
               if ((s.handler or s.name), s.proto) not in fuzz.PROBES]
    assert missing == []


def test_mutate_is_bounded_and_changes_input() -> None:
    import random

    rng = random.Random(7)
    outputs = {fuzz.mutate(rng, b"FX1 GET probe.txt 0\n") for _ in range(200)}
    assert len(outputs) > 100
    assert all(len(o) <= 70000 for o in outputs)


def test_live_fuzz_short() -> None:
    seconds = float(os.environ.get("INETKIT_FUZZ_SECONDS", "8"))
    report = fuzz.fuzz(seconds=seconds, cases=4000, seed=int(os.environ.get("INETKIT_FUZZ_SEED", "20261121")),
                       settle_seconds=10.0)
    print(report.table())
    assert all(r.before == "ok" for r in report.rows), report.table()
    assert report.cases >= 20 * len(report.rows), report.table()
    assert report.alive, report.log_tail
    assert report.tracebacks == 0, report.log_tail
    assert report.probe_failures == [], report.table()
    assert report.final.zombies == 0
    assert report.fd_ok and report.rss_ok, report.table()
    assert report.idle_cpu <= report.idle_cpu_max, report.table()  # no UDP loop, no spinning task left


def test_peer_text_cannot_forge_log_lines(tmp_path: Path) -> None:
    """A datagram or greeting carrying a newline and an escape sequence is
    logged as one escaped line (CWE-117), not as a forged daemon line."""
    forged = b"hi\n2026-01-01 00:00:00,000 inetkit[1] INFO FORGED-LINE \x1b[2J"
    with fuzz.fuzz_daemon(tmp_path) as (daemon, log_path):
        targets = {(t.name, t.proto): t for t in fuzz.targets_of(daemon.ports)}  # type: ignore[attr-defined]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(forged + b"\0", targets[("udp-hello", "udp")].address)
            assert sock.recvfrom(4096)[0].startswith(b"Hello Client")
        for name in ("greeting", "bit"):  # bit is an exec'd program writing to the daemon's log
            with socket.create_connection(targets[(name, "tcp")].address, timeout=5) as sock:
                assert b"\0" in fuzz._recv_until(sock, b"\0", 4096)
                sock.sendall(forged + b"\0")
                sock.shutdown(socket.SHUT_WR)
                sock.recv(16)
        # the log is written by the daemon asynchronously: wait (bounded) for the three lines
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log = log_path.read_bytes()
            if log.count(b"FORGED-LINE") >= 3:
                break
            time.sleep(0.1)
    assert log.count(b"FORGED-LINE") >= 3, log[-2000:]
    for line in log.splitlines():
        assert not line.startswith(b"2026-01-01"), line
        assert b"\x1b" not in line, line
