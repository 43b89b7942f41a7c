"""``python -m bench [SCENARIO ...] [--quick] [--readme]``: measure inetkit
against the real peers, write bench/results/latest.md, latest.json and the
plots; ``--readme`` also replaces the README's performance section."""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench import scenarios
from bench.harness import Context, say
from bench.peers import PeerMissing

HERE = Path(__file__).resolve().parent


def _loadavg() -> float:
    """The 1-minute load average: other work sharing the 2 cores shows here."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"what to run (default: all, in this order): {', '.join(scenarios.ORDER)}")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (< 3 minutes)")
    parser.add_argument("--readme", action="store_true", help="also write the README's performance section")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="output folder (default bench/results)")
    args = parser.parse_args(argv)
    chosen = args.scenarios or scenarios.ORDER
    unknown = [s for s in chosen if s not in scenarios.ORDER]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(scenarios.ORDER)}")
    # the idle scenario holds 10,000 sockets: take the whole allowance the system gives
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    command = "python -m bench" + ("".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])))
    ctx = Context(quick=args.quick, results_dir=args.results)
    started, t0 = time.time(), time.monotonic()
    failures = 0
    for name in scenarios.ORDER:
        if name not in chosen:
            continue
        say(f"scenario {name}")
        s0 = time.monotonic()
        load0 = _loadavg()
        try:
            scenarios.load(name).run(ctx)
            status = ctx.status.get(name, ("measured", 0))[0]
        except PeerMissing as exc:
            status = f"not measured: {exc}"
        except scenarios.NotAvailable as exc:
            status = f"not measured: {exc}"
        except Exception as exc:  # one broken scenario must not lose the others' results
            failures += 1
            traceback.print_exc()
            status = f"failed: {exc!r}"[:300]
        ctx.status[name] = (status, time.monotonic() - s0)
        ctx.load[name] = (load0, _loadavg())
        say(f"scenario {name}: {status} ({time.monotonic() - s0:.0f} s)")
    elapsed = time.monotonic() - t0
    from bench import report

    latest = report.write(ctx, command, started, elapsed)
    say(f"wrote {latest} and {latest.with_suffix('.json')} in {elapsed:.0f} s")
    if args.readme:
        readme = HERE.parent / "README.md"
        report.update_readme(readme, ctx, command, started, elapsed)
        say(f"updated the performance section of {readme}")
    print(latest.read_text())
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
