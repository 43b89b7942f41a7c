"""Soak: a bounded mixed workload against every default service, then zero
errors, zero zombies, zero leaked fds and a flat RSS.

Workers loop until the deadline, each time picking a service and a client:
our own correct client (``inetkit.testing.fuzz.PROBES``) or, where installed,
a real one (OpenBSD ``nc`` for the line services, ``curl tftp://`` for TFTP).
Runs ~60 s by default; ``INETKIT_SOAK_SECONDS`` lengthens (or shortens) it.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from inetkit.testing import fuzz
from inetkit.testing.peers import find_peer

SOAK_SECONDS = float(os.environ.get("INETKIT_SOAK_SECONDS", "60"))
WORKERS = 6
FD_SLACK = 3
#: RSS may not grow by more than this between the end of warm-up and the end
RSS_GROWTH_KIB = 8 * 1024

Client = Callable[[tuple[str, int]], None]


def _run(argv: list[str], data: bytes = b"", timeout: float = 10.0) -> bytes:
    done = subprocess.run(argv, input=data, capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise fuzz.ProbeFailed(f"{argv[0]} exited {done.returncode}: {done.stderr[-200:]!r}")
    return done.stdout


def _nc_echo(address: tuple[str, int]) -> None:
    payload = os.urandom(8).hex().encode() + b"\n"
    # -N: shut down the write side at stdin EOF, so echo's reply ends with the connection
    out = _run(["nc", "-N", "-w", "5", address[0], str(address[1])], payload)
    if out != payload:
        raise fuzz.ProbeFailed(f"nc echo got {out[:60]!r}")


def _nc_daytime(address: tuple[str, int]) -> None:
    out = _run(["nc", "-d", "-w", "5", address[0], str(address[1])])
    if not (out.endswith(b"\n") and len(out) > 8):
        raise fuzz.ProbeFailed(f"nc daytime got {out[:60]!r}")


def _nc_udp_echo(address: tuple[str, int]) -> None:
    # nc -u has no retry: one lost datagram on loopback is rare, one retry covers it
    for _ in range(2):
        out = subprocess.run(["nc", "-u", "-w", "1", address[0], str(address[1])], input=b"udp-soak\n",
                             capture_output=True, timeout=10).stdout
        if out == b"udp-soak\n":
            return
    raise fuzz.ProbeFailed(f"nc -u echo got {out[:60]!r}")


def _curl_tftp(address: tuple[str, int]) -> None:
    out = _run(["curl", "-sS", "--max-time", "10", f"tftp://{address[0]}:{address[1]}/{fuzz.PROBE_FILE}"])
    if out != fuzz.PROBE_BYTES:
        raise fuzz.ProbeFailed(f"curl tftp got {len(out)} bytes")


#: real clients, when the program is installed: (key, proto) -> (program, client)
REAL_CLIENTS: dict[tuple[str, str], tuple[str, Client]] = {
    ("echo", "tcp"): ("nc", _nc_echo),
    ("echo", "udp"): ("nc", _nc_udp_echo),
    ("daytime", "tcp"): ("nc", _nc_daytime),
    ("tftp", "udp"): ("curl", _curl_tftp),
}


@pytest.mark.timeout(SOAK_SECONDS + 90)
def test_soak(tmp_path: Path) -> None:
    with fuzz.fuzz_daemon(tmp_path) as (daemon, log_path):
        pid = daemon.pid  # type: ignore[attr-defined]
        targets = fuzz.targets_of(daemon.ports)  # type: ignore[attr-defined]
        plan: list[tuple[str, fuzz.Target, Client]] = []
        for t in targets:
            probe = fuzz.PROBES.get((t.key, t.proto))
            assert probe is not None, f"no probe for {t.label}"
            plan.append(("ours", t, probe))
            real = REAL_CLIENTS.get((t.key, t.proto))
            if real is not None and find_peer(real[0]):
                plan.append((real[0], t, real[1]))
        for _, t, client in plan:  # warm-up: everything works once
            client(t.address)
        baseline = fuzz.settle(pid, fuzz.resources(pid), 0, 3.0)

        counts: dict[str, int] = {}
        errors: list[str] = []
        rss_samples: list[tuple[float, int]] = []
        lock = threading.Lock()
        started = time.monotonic()
        deadline = started + SOAK_SECONDS
        stop = threading.Event()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < deadline and not stop.is_set():
                kind, target, client = rng.choice(plan)
                label = f"{target.label} ({kind})"
                try:
                    client(target.address)
                    outcome = None
                except Exception as exc:  # counted: the assertion below reports them all
                    outcome = f"{label}: {type(exc).__name__}: {exc}"
                with lock:
                    counts[label] = counts.get(label, 0) + 1
                    if outcome:
                        errors.append(outcome)

        def sampler() -> None:
            while not stop.wait(1.0):
                rss_samples.append((time.monotonic() - started, fuzz.resources(pid).rss_kib))

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
        watcher = threading.Thread(target=sampler, daemon=True)
        for t in threads + [watcher]:
            t.start()
        for t in threads:
            t.join(SOAK_SECONDS + 60)
        stop.set()
        watcher.join(5)
        final = fuzz.settle(pid, baseline, FD_SLACK, 15.0)
        log = log_path.read_text(errors="replace")

        total = sum(counts.values())
        print(f"soak: {total} operations in {SOAK_SECONDS:.0f}s over {len(plan)} (service, client) pairs, "
              f"{len(errors)} errors; baseline {baseline}; after {final}")
        for label in sorted(counts):
            print(f"  {label:<40} {counts[label]}")
        assert errors == [], errors[:20]
        assert all(counts.get(f"{t.label} (ours)", 0) > 0 for t in targets), counts
        assert total >= 10 * len(plan)
        assert daemon.process.poll() is None  # type: ignore[attr-defined]
        assert "Traceback (most recent call last)" not in log
        assert final.zombies == 0, final
        assert final.fds <= baseline.fds + FD_SLACK, (baseline, final)
        # RSS flat: after the first quarter (allocator warm-up), no steady growth
        steady = [rss for t, rss in rss_samples if t >= SOAK_SECONDS / 4]
        if len(steady) >= 2:
            assert steady[-1] - steady[0] <= RSS_GROWTH_KIB, rss_samples
        assert final.rss_kib <= baseline.rss_kib + 2 * RSS_GROWTH_KIB, (baseline, final)
