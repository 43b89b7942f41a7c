"""``python -m bench.tftpwin [OPS] [WINDOWSIZES] [RUNS] [BLKSIZE]``: windowed
TFTP, inetkit client + server against atftp + atftpd (both unpinned, as the
tftp scenario runs them), alternated run by run, on a 48 MiB file; prints the
median rates, each run's rate, the servers' CPU per transfer and the ratio.
E.g. ``python -m bench.tftpwin get,put 16,64 6``.  A focused, shorter
version of the scenario's windowed tables (same clients, options and check:
a transfer counts only when the received file has the full size; the
scenario also compares SHA-256).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers import require
from bench.procs import tree_cpu
from bench.scenarios.tftp import _atftpd, _inetkit
from bench.servers import REPO, _env

SIZE = 48 << 20


def one(op: str, who: str, port: int, pid: int, work: Path, root: Path, source: Path, blksize: int,
        windowsize: int, count: int) -> tuple[float | None, float]:
    """(MiB/s or None, server CPU seconds) of one transfer."""
    out = work / f"get-{count}.bin"
    remote = f"put-{count}.bin"
    before = tree_cpu(pid)
    if who == "inetkit":
        argv = [sys.executable, "-m", "bench.tftprun", op, "127.0.0.1", str(port),
                source.name if op == "get" else remote, str(out) if op == "get" else str(source),
                str(blksize), str(windowsize)]
        done = subprocess.run(argv, capture_output=True, env=_env(), cwd=REPO, timeout=120)
        try:
            elapsed = json.loads(done.stdout.decode().strip().splitlines()[-1])["elapsed"]
        except (ValueError, KeyError, IndexError):
            elapsed = None
    else:
        argv = [require("atftp"), "--get" if op == "get" else "--put", "-r", source.name if op == "get" else remote,
                "-l", str(out) if op == "get" else str(source), "--option", f"blksize {blksize}",
                *(["--option", f"windowsize {windowsize}"] if windowsize > 1 else []),
                "--option", "timeout 1", "127.0.0.1", str(port)]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, timeout=120)
        elapsed = time.perf_counter() - start if done.returncode == 0 else None
    time.sleep(0.05)  # an upload is renamed into place after the last ACK
    cpu = tree_cpu(pid) - before
    target = out if op == "get" else root / remote
    ok = elapsed is not None and target.exists() and target.stat().st_size == SIZE
    target.unlink(missing_ok=True)
    return (SIZE / 2**20 / elapsed if ok and elapsed else None), cpu


def main(argv: list[str]) -> int:
    ops = argv[0].split(",") if argv else ["get", "put"]
    sizes = [int(x) for x in argv[1].split(",")] if len(argv) > 1 else [16, 64]
    runs = int(argv[2]) if len(argv) > 2 else 6
    blksize = int(argv[3]) if len(argv) > 3 else 1468
    work = Path(tempfile.mkdtemp(prefix="inetkit-tftpwin-"))
    root = work / "root"
    root.mkdir()
    os.chmod(root, 0o777)
    source = root / "p.bin"
    source.write_bytes(os.urandom(SIZE))
    os.chmod(source, 0o644)
    servers = {}
    try:
        servers = {"inetkit": _inetkit(root), "atftp": _atftpd(root)}
        count = 0
        for op in ops:
            for windowsize in sizes:
                rates: dict[str, list[float]] = {name: [] for name in servers}
                cpus: dict[str, list[float]] = {name: [] for name in servers}
                for r in range(runs):
                    for name in (list(servers) if r % 2 == 0 else list(servers)[::-1]):
                        count += 1
                        rate, cpu = one(op, name, servers[name].port, servers[name].pid, work, root, source,
                                        blksize, windowsize, count)
                        if rate is not None:
                            rates[name].append(rate)
                            cpus[name].append(cpu)
                if not rates["inetkit"] or not rates["atftp"]:
                    print(f"{op} ws{windowsize}: transfers failed")
                    continue
                line = [f"{op} blksize {blksize} windowsize {windowsize}:"]
                for name in servers:
                    line.append(f"{name} {statistics.median(rates[name]):.0f} MiB/s "
                                f"({' '.join(f'{x:.0f}' for x in rates[name])}), server CPU "
                                f"{statistics.median(cpus[name]):.3f} s |")
                ratio = statistics.median(rates["inetkit"]) / statistics.median(rates["atftp"])
                print(" ".join(line), f"ratio {ratio:.2f}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
