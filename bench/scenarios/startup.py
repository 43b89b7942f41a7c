"""Startup: ``inetkit serve`` on the embedded default config until its
'inetkit: ready' line (every service bound), and ``inetkit --help``.

Targets (issue 2): serve ready in < 0.5 s; ``--help`` in < 0.2 s.  Measured
with a warm bytecode cache (what an installed package has) and, for the
record, cold (``PYTHONDONTWRITEBYTECODE`` and an empty cache: every module
compiled from source).  ``python -c pass`` is the interpreter's own floor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Context, alternate
from bench.procs import stop_process
from bench.servers import REPO, bytecode_env, read_ready
from bench.stats import fmt_number

NAME = "startup"


def _env(cold: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    if cold:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="inetkit-bench-cold-")  # empty: nothing cached
    else:
        bytecode_env(env)
    return env


def inetkit_argv() -> list[str]:
    script = shutil.which("inetkit")
    return [script] if script else [sys.executable, "-m", "inetkit.cli.main"]


def time_serve(cold: bool) -> tuple[float, str]:
    """Seconds from exec to the ready line, and that line."""
    env = _env(cold)
    start = time.perf_counter()
    control = Path(tempfile.mkdtemp(prefix="inetkit-bench-ctl-")) / "inetkit.sock"
    # --any-port: the default config's services, on ports the OS picks, so
    # that a daemon or test already holding 9000, 10007... cannot fail a bind;
    # a private control socket for the same reason.
    argv = [*inetkit_argv(), "serve", "--any-port", "--control", str(control), "--no-connection-log"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=env)
    try:
        lines = read_ready(proc, 20.0)
        elapsed = time.perf_counter() - start
    finally:
        stop_process(proc)
        shutil.rmtree(control.parent, ignore_errors=True)
    if cold:
        shutil.rmtree(env["PYTHONPYCACHEPREFIX"], ignore_errors=True)
    return elapsed, lines[-1].strip()


def time_command(argv: list[str], cold: bool) -> float:
    env = _env(cold)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                   env=env, timeout=30, check=True)
    elapsed = time.perf_counter() - start
    if cold:
        shutil.rmtree(env["PYTHONPYCACHEPREFIX"], ignore_errors=True)
    return elapsed


def run(ctx: Context) -> None:
    runs = ctx.runs(3, 10)
    serve = ctx.measurement(NAME, "time to ready / to exit", "s", reference="python -c pass", higher_is_better=False)
    ready_lines: set[str] = set()
    subjects = {
        "inetkit serve (default config)": lambda cold: time_serve(cold),
        "inetkit --help": lambda cold: (time_command([*inetkit_argv(), "--help"], cold), ""),
        "python -c pass": lambda cold: (time_command([sys.executable, "-c", "pass"], cold), ""),
    }
    # warm the bytecode cache once, untimed
    for start in subjects.values():
        start(False)

    def measure(_run: int, label: str) -> None:
        cold = label.endswith(" (cold)")
        base = label.removesuffix(" (cold)")
        elapsed, line = subjects[base](cold)
        serve.add(label, elapsed)
        if line:
            ready_lines.add(line.split(";", 1)[0])  # drop the (private, per-run) control socket path

    labels = [*subjects, "inetkit serve (default config) (cold)", "inetkit --help (cold)"]
    alternate(ctx, labels, runs, measure, NAME)
    s = serve.summary("inetkit serve (default config)")
    h = serve.summary("inetkit --help")
    ctx.target(2, "`inetkit serve` on the default config: every service bound", "<", 0.5, s.median if s else None,
               unit="s", detail="; ".join(sorted(ready_lines)))
    ctx.target(2, "`inetkit --help`", "<", 0.2, h.median if h else None, unit="s")
    ctx.note(NAME, f"{runs} runs each, alternated. Warm = bytecode cached (as after `pip install`); cold = "
                   "PYTHONDONTWRITEBYTECODE with an empty cache, every module compiled from source (this "
                   "machine's shells export PYTHONDONTWRITEBYTECODE=1). `inetkit serve` is timed from exec to "
                   "its 'inetkit: ready' line (`serve --any-port --control PRIVATE`: the default config's services on OS-chosen ports, so a test holding a default port cannot fail a bind); the ready line says how many services were bound"
                   + (f" ({', '.join(sorted(ready_lines))})" if ready_lines else "") + ". "
                   f"Median warm serve {fmt_number(s.median if s else None)} s.")
