"""The floor for a fork-per-connection server in one Python process, beside
inetkit's ``fork`` model and ``socketserver.ForkingTCPServer`` (issue 2's
connection-rate target), under the C load generator (10 connections in
flight, daytime).  A measurement script, not a bench scenario::

    python -m bench.forkfloor [--runs 4] [--duration 2]

Subjects (each its own process, all on 127.0.0.1):

- ``floor``: the least a Python accept/fork/daytime loop can do: ``python -S``,
  no imports beyond ``socket``/``time``, ``accept``, ``os.fork``, the child
  sends the line and leaves with ``os._exit``, the parent reaps with
  ``waitpid(WNOHANG)``;
- ``inetkit fork``: ``inetkit serve`` with daytime under the fork model;
- ``ForkingTCPServer``: the bench's reference server (``bench/refservers.py``).

Printed per subject: connections/s and server CPU per connection (the whole
process tree, reaped children included), median and range over the runs,
subjects alternated; then the minor page faults per connection of the
process that forks (inetkit's: the daemon's fork worker) and of its children
(reaped ones: ``/proc/PID/stat`` minflt and cminflt before and after each
run): the copy-on-write faults that make most of a fork-per-connection
server's cost (see ``src/inetkit/models/forkworker.py``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from bench.cload import fast_load
from bench.procs import Server, popen
from bench.servers import _env, read_ready, start_inetkit, start_reference

FLOOR = r"""
import os, socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1024)
print("port", s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    if os.fork() == 0:
        c.sendall(time.strftime("%a %b %d %H:%M:%S %Y\r\n", time.gmtime()).encode())
        c.close()
        os._exit(0)
    c.close()
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
"""


def _stat(pid: int) -> list[str]:
    # the fields after "(comm)": state is [0], ppid [1], minflt [7], cminflt [8]
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def forking_pid(server: Server, daemon: bool) -> int:
    """The process that accepts and forks: the server itself, or for an
    inetkit ``daemon`` (one fork service) the daemon's only child, its worker."""
    if not daemon:
        return server.pid
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == server.pid:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    if len(children) != 1:
        raise RuntimeError(f"expected one fork worker under {server.pid}, found {children}")
    return children[0]


def faults(pid: int) -> tuple[int, int]:
    """(minor faults of ``pid``, of its reaped children)."""
    fields = _stat(pid)
    return int(fields[7]), int(fields[8])


def start_floor() -> Server:
    proc = popen([sys.executable, "-S", "-c", FLOOR], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                 env=_env())
    lines = read_ready(proc, 10.0, marker="port ")
    return Server("floor", proc, int(lines[-1].split()[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forkfloor")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args(argv)
    starters = {
        "floor": start_floor,
        "inetkit fork": lambda: start_inetkit("daytime-fork", {"daytime": {"proto": "tcp", "handler": "daytime",
                                                                           "model": "fork"}}),
        "ForkingTCPServer": lambda: start_reference("ForkingTCPServer", "daytime-forking"),
    }
    servers: dict[str, Server] = {}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in starters}
    fault_rows: dict[str, list[tuple[float, float]]] = {name: [] for name in starters}
    try:
        for name, start in starters.items():
            servers[name] = start()
        params = {"host": "127.0.0.1", "expect": 1}
        for server in servers.values():
            fast_load("connect", {**params, "port": server.port}, 10, 0.3, server)  # warm-up
        forkers = {name: forking_pid(server, name.startswith("inetkit")) for name, server in servers.items()}
        names = list(servers)
        for run in range(args.runs):
            for name in names[run % len(names):] + names[:run % len(names)]:
                server = servers[name]
                before = faults(forkers[name])
                r = fast_load("connect", {**params, "port": server.port}, 10, args.duration, server)
                after = faults(forkers[name])
                ops = max(r.ops, 1)
                results[name].append((r.rate, r.server_cpu * 1e6 / ops))
                fault_rows[name].append(((after[0] - before[0]) / ops, (after[1] - before[1]) / ops))
    finally:
        for server in servers.values():
            server.stop()
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    reference = statistics.median(c for _, c in results["ForkingTCPServer"])
    reference_rate = statistics.median(r for r, _ in results["ForkingTCPServer"])
    for name, rows in results.items():
        rates = [r for r, _ in rows]
        cpus = [c for _, c in rows]
        rate, cpu = statistics.median(rates), statistics.median(cpus)
        print(f"{name:18s} {rate:7.0f} conn/s ({min(rates):.0f}-{max(rates):.0f}) x{rate / reference_rate:.2f}   "
              f"{cpu:6.0f} us CPU/conn ({min(cpus):.0f}-{max(cpus):.0f}) x{reference / cpu:.2f} cheaper")
    for name, rows in fault_rows.items():
        print(f"{name:18s} minor faults/conn: forking process {statistics.median(p for p, _ in rows):5.1f}, "
              f"children {statistics.median(c for _, c in rows):5.1f} (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
