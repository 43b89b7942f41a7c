"""Old code against new, in adjacent pairs: async daytime's server CPU per
connection under two source trees (or the connection log off and on), the
way this session's small changes were judged.  A measurement script, not a
bench scenario::

    git worktree add --detach /tmp/inetkit-old <commit>
    python -m bench.pairab --old /tmp/inetkit-old/src [--pairs 12] [--seconds 2]
    python -m bench.pairab --log [--pairs 12] [--seconds 2]

Why pairs: on a small VM one subject's CPU per connection drifts by ±15-20 %
from one run to the next (the machine's state moves: TIME_WAIT sockets,
caches, the hypervisor), while two runs a few seconds apart move together.
So the two subjects run back to back, their order swapped every pair, and
the median of the per-pair ratios is printed beside each side's median.

``--old SRC`` starts the "old" daemon with ``SRC`` first on its PYTHONPATH
(a worktree's ``src``); the "new" one is this tree.  ``--log`` instead
compares this tree with its connection log off ("old") and on ("new"),
which is issue 3's logging cost.  Both use the C load generator, 10
connections in flight, as ``bench/scenarios/connrate.py`` does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from bench.cload import fast_load
from bench.servers import source_first, start_inetkit

CLIENTS = 10
DAYTIME = {"daytime": {"proto": "tcp", "handler": "daytime", "model": "async"}}


def _start(label: str, src: str | None, connection_log: bool) -> Any:
    """An ``inetkit serve`` with async daytime; ``src`` first on its path."""
    with source_first(src):
        return start_inetkit(label, DAYTIME, connection_log=connection_log)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pairab", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--old", metavar="SRC", help="the old tree's src directory (e.g. a git worktree's)")
    which.add_argument("--log", action="store_true", help="this tree, connection log off vs on")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.old is not None and not os.path.isdir(os.path.join(args.old, "inetkit")):
        parser.error(f"--old {args.old}: no inetkit package there")
    if args.old is not None:
        subjects = {"old": _start("pairab-old", args.old, False), "new": _start("pairab-new", None, False)}
    else:
        subjects = {"old": _start("pairab-log-off", None, False), "new": _start("pairab-log-on", None, True)}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for server in subjects.values():  # warm-up, not counted
            fast_load("connect", {"host": "127.0.0.1", "expect": 1, "port": server.port}, CLIENTS, 0.3, server)
        for i in range(args.pairs):
            order = ["old", "new"] if i % 2 == 0 else ["new", "old"]
            for name in order:
                server = subjects[name]
                r = fast_load("connect", {"host": "127.0.0.1", "expect": 1, "port": server.port}, CLIENTS,
                              args.seconds, server)
                cpu[name].append(r.server_cpu * 1e6 / r.ops if r.ops else float("nan"))
    finally:
        for server in subjects.values():
            server.stop()
    ratios = [new / old for old, new in zip(cpu["old"], cpu["new"])]
    for name, values in cpu.items():
        print(f"{name}: median {statistics.median(values):.2f} µs/conn  runs {' '.join(f'{v:.1f}' for v in values)}")
    print(f"new/old, median of {len(ratios)} adjacent pairs: {statistics.median(ratios):.3f}"
          f" (pairs {min(ratios):.3f} to {max(ratios):.3f})")
    if args.log:
        print(f"logging's cost (1 - off/on): {100 * (1 - 1 / statistics.median(ratios)):.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
