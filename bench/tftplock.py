"""``python -m bench.tftplock [BLKSIZE] [RUNS] [CPU] [--old SRC]``: lock-step TFTP, curl
downloading 24 MiB from inetkit, in.tftpd and atftpd, client and server
pinned to one CPU (as the tftp scenario does), with CPU per block beside the
rates: the server's (utime+stime of its process tree, /proc) and curl's
(rusage of the finished child).  Lock-step is round-trip bound, so CPU per
block is what to compare on a busy machine; in.tftpd's forked children are
not reaped into its account, so its server column stays empty.  ``--old
SRC`` adds the inetkit server of another tree (a git worktree's ``src``),
to judge a change side by side.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers import require
from bench.procs import set_affinity
from bench.scenarios.tftp import _atftpd, _hpa, _inetkit
from bench.servers import source_first

SIZE = 24 << 20


def tree_cpu(pid: int) -> float:
    """utime+stime (+ reaped children) of ``pid`` and its children, seconds."""
    total = 0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [pid, *map(int, children)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    old_src = None
    if "--old" in argv:  # ``--old SRC``: that tree's server too, beside this one's
        i = argv.index("--old")
        old_src = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    blksize = int(argv[0]) if argv else 512
    runs = int(argv[1]) if len(argv) > 1 else 5
    cpu = int(argv[2]) if len(argv) > 2 else 0
    curl = require("curl")
    work = Path(tempfile.mkdtemp(prefix="inetkit-tftplock-"))
    root = work / "root"
    root.mkdir()
    os.chmod(root, 0o777)
    (root / "p.bin").write_bytes(os.urandom(SIZE))
    os.chmod(root / "p.bin", 0o644)
    servers = {}
    try:
        servers = {"inetkit": _inetkit(root), "in.tftpd": _hpa(root), "atftpd": _atftpd(root)}
        if old_src is not None:
            with source_first(old_src):
                servers["inetkit old"] = _inetkit(root)
        for server in servers.values():
            set_affinity(server.pid, {cpu})
        blocks = SIZE / blksize
        rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
        names = list(servers)
        for r in range(runs):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotated, like the bench
                before = tree_cpu(servers[name].pid)
                usage = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                # stderr is a pipe on purpose: with a timeout and no pipe, subprocess
                # polls for the exit with sleeps of up to 50 ms (rates came out in
                # steps of ~10 %); a pipe's EOF marks the exit at once
                subprocess.run(["taskset", "-c", str(cpu), curl, "-s", "-o", "/dev/null", "--tftp-blksize",
                                str(blksize), f"tftp://127.0.0.1:{servers[name].port}/p.bin"], check=True, timeout=120,
                               stderr=subprocess.PIPE)
                elapsed = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                client = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
                rows[name].append((SIZE / elapsed / 2**20, (tree_cpu(servers[name].pid) - before) / blocks * 1e6,
                                   client / blocks * 1e6))
        ref = statistics.median(r[0] for r in rows["in.tftpd"])
        print(f"blksize {blksize}, {runs} runs, CPU {cpu}, load {os.getloadavg()[0]:.2f}")
        for name, values in rows.items():
            rate = statistics.median(v[0] for v in values)
            print(f"  {name:11s} {rate:7.1f} MiB/s ({rate / ref:.2f}x)  server {statistics.median(v[1] for v in values):5.2f}"
                  f" us/block  curl {statistics.median(v[2] for v in values):5.2f} us/block")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
