"""``python -m bench.logtoggle [--slices N] [--slice SECONDS]``: issue 3's
logging cost measured inside one daemon.  Async daytime under steady load
from the C generator (10 connections in flight), the connection log
switched off and on every slice (SIGUSR1), the daemon's CPU
(getrusage) and connections (its counters) read at each switch.  Prints
CPU per connection with the log on and off over all slices, the cost
``1 - off/on``, and the median of adjacent on/off slice pairs.

Why a third way beside ``bench.pairab --log`` and the bench's connrate
pairs: two daemons run apart see different machine states (TIME_WAIT
sockets, the hypervisor), which spreads single pairs by ±15 %.  Here one
daemon, one listener and one load run serve both states, alternating
every quarter second, so the drift cancels out.  The switch is a bench
wrapper (this module, run as the daemon's main), not a daemon feature.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Any


def _daemon(argv: list[str]) -> int:
    """The daemon's main: inetkit serve, plus the SIGUSR1 switch and a record
    of (state, CPU seconds, connections) at each switch, written at exit."""
    from inetkit.cli.main import main
    from inetkit.models import runtime

    runtimes: list[Any] = []
    post_init = runtime.ServiceRuntime.__post_init__

    def track(self: Any) -> None:
        post_init(self)
        runtimes.append(self)

    runtime.ServiceRuntime.__post_init__ = track  # type: ignore[method-assign]
    records: list[str] = []

    def switch(_sig: int, _frame: Any) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        state = runtimes[0].connection_log if runtimes else None
        records.append(f"{state} {usage.ru_utime + usage.ru_stime:.6f} "
                       f"{sum(rt.counters.accepted for rt in runtimes)}\n")
        for rt in runtimes:
            rt.connection_log = not rt.connection_log

    signal.signal(signal.SIGUSR1, switch)
    out = os.environ["INETKIT_LOGTOGGLE_OUT"]
    try:
        sys.argv[0] = "inetkit"
        return main(argv)
    finally:
        with open(out, "w") as f:
            f.writelines(records)


@dataclass
class Toggled:
    """What ``measure`` found: CPU per connection (µs) with the log on and off
    over all slices, and the median of adjacent on/off slice pairs' costs."""

    on: float
    off: float
    pair_median: float
    slices: int  # per state

    @property
    def cost(self) -> float:
        """The connection rate lost with the log on, %: 1 - (CPU off / on)."""
        return 100 * (1 - self.off / self.on)


def measure(slices: int = 120, slice_seconds: float = 0.25) -> Toggled:
    """Run the daemon and the load, switch the log every ``slice_seconds``."""
    from bench.cload import binary
    from bench.servers import start_inetkit

    exe = binary()
    if exe is None:
        raise RuntimeError("the C load generator (bench/cload.c) did not build")
    fd, out = tempfile.mkstemp(prefix="inetkit-logtoggle-")
    os.close(fd)
    os.environ["INETKIT_LOGTOGGLE_OUT"] = out
    server = start_inetkit("logtoggle", {"daytime": {"proto": "tcp", "handler": "daytime", "model": "async"}},
                           connection_log=True, main_module="bench.logtoggle")
    try:
        load = subprocess.Popen([str(exe), "connect", "127.0.0.1", str(server.port), "10", "1",
                                 str(slices * slice_seconds + 10), "1000000000"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert load.stdin is not None and load.stdout is not None
        load.stdout.readline()  # "ready"
        load.stdin.write("go\n")
        load.stdin.flush()
        tick = threading.Event()
        tick.wait(1.0)  # warm-up, not counted (the first switch starts the count)
        for _ in range(slices + 1):
            os.kill(server.pid, signal.SIGUSR1)
            tick.wait(slice_seconds)
        load.stdin.close()
        load.wait(30)
    finally:
        server.stop()
    with open(out) as f:
        rows = [line.split() for line in f]
    os.unlink(out)
    per: dict[str, list[float]] = {"True": [], "False": []}
    totals = {"True": [0.0, 0], "False": [0.0, 0]}
    for before, after in zip(rows, rows[1:]):
        state = after[0]  # the state recorded when the slice ended
        cpu, conns = float(after[1]) - float(before[1]), int(after[2]) - int(before[2])
        if conns:
            per[state].append(cpu / conns * 1e6)
            totals[state][0] += cpu
            totals[state][1] += conns
    if not (totals["True"][1] and totals["False"][1]):
        raise RuntimeError("no connections were served in one of the states")
    on, off = (totals[s][0] / totals[s][1] * 1e6 for s in ("True", "False"))
    pairs = [100 * (1 - b / a) for a, b in zip(per["True"], per["False"])]
    return Toggled(on, off, statistics.median(pairs), min(len(per["True"]), len(per["False"])))


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return _daemon(argv)
    parser = argparse.ArgumentParser(prog="python -m bench.logtoggle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=120, help="slices in all, half with the log on")
    parser.add_argument("--slice", type=float, default=0.25, help="seconds per slice")
    args = parser.parse_args(argv)
    try:
        r = measure(args.slices, args.slice)
    except RuntimeError as exc:
        parser.error(str(exc))
    print(f"log on {r.on:.2f} µs/conn, off {r.off:.2f} ({r.slices} slices each of {args.slice:g} s): "
          f"cost {r.cost:.1f} %; median of adjacent pairs {r.pair_median:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
