"""Write the results: ``latest.md`` (tables), ``latest.json`` (every run's
raw values) and, on request, the README's performance section (between its
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` markers)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import Context
from bench.stats import Target, markdown_table, targets_table

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

TITLES = {
    "models": "Server models: a 200 ms handler, 1..50 concurrent clients",
    "echo": "Echo round trips (64 B, 100 connections)",
    "connrate": "Connection rate (daytime, short connections, 10 clients)",
    "startup": "Startup",
    "idle": "Idle connections (async echo)",
    "tftp": "TFTP",
    "files": "TCP file transfer",
    "chat": "Chat fan-out",
}


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:
        uv = "absent"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1), "os": os_name,
        "kernel": platform.release(), "python": platform.python_version(), "uvloop": uv,
    }


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[1])
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def render(ctx: Context, command: str, started: float, elapsed: float, heading: str = "#") -> str:
    m = machine()
    h2 = heading + "#"
    parts = [
        f"{heading} inetkit benchmark results",
        "",
        f"Taken {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} at commit `{commit()}` "
        f"by `{command}` in {elapsed:.0f} s.",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}, Linux {m['kernel']}, "
        f"Python {m['python']}, uvloop {m['uvloop']}. Everything on loopback; medians of alternated runs "
        "with (min–max); ratio = inetkit / peer.",
        "",
        f"{h2} Targets from the issues",
        "",
        targets_table(ctx.targets) if ctx.targets else "(no target measured in this run)",
        "",
    ]
    if (ctx.results_dir / "targets.png").exists() and ctx.targets:
        parts += ["![targets](targets.png)", ""]
    status_rows = []
    for name, (status, seconds) in ctx.status.items():
        before, after = getattr(ctx, "load", {}).get(name, (float("nan"), float("nan")))
        status_rows.append([name, status, f"{seconds:.0f} s", f"{before:.1f} → {after:.1f}"])
    if status_rows:
        parts += [markdown_table(["scenario", "status", "time", "load average (1 min) before → after"], status_rows),
                  "",
                  "The load average counts everything runnable on the machine; well above 2 (its cores) means "
                  "other work shared the CPUs with this run, which widens the min–max ranges.", ""]
    for scenario in ctx.status:
        tables = [m for m in ctx.measurements if m.scenario == scenario]
        notes = ctx.notes.get(scenario, [])
        plots = ctx.plots.get(scenario, [])
        extra = ctx.tables.get(scenario, [])
        if not tables and not notes and not plots and not extra:
            continue
        parts += [f"{h2} {TITLES.get(scenario, scenario)}", ""]
        for table in tables:
            if table.runs:
                parts += [table.table(), ""]
        for markdown in extra:
            parts += [markdown, ""]
        for plot in plots:
            parts += [f"![{scenario}]({plot})", ""]
        parts += [f"- {n}" for n in dict.fromkeys(notes)]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def goal_fraction(target: Target) -> float | None:
    """How far a target is from its goal, as one number where >= 1 is met:
    value/threshold for "at least" goals, threshold/value for "at most"."""
    if target.value is None:
        return None
    if target.op in (">=", ">"):
        return target.value / target.threshold if target.threshold else None
    return target.threshold / target.value if target.value else float("inf")


def plot_targets(ctx: Context) -> str | None:
    """One bar per measured target: measured against its goal (1 = just met)."""
    rows = [(t, goal_fraction(t)) for t in ctx.targets]
    rows = [(t, f) for t, f in rows if f is not None]
    if not rows:
        return None
    try:
        import matplotlib
    except ImportError:  # the tables are still written; only the picture is missing
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(11, 0.38 * len(rows) + 1.4))
    labels = [f"#{t.issue} {t.goal[:70]}" for t, _ in rows]
    values = [min(f, 10.0) for _, f in rows]
    colors = ["tab:green" if f >= 1 else "tab:red" for _, f in rows]
    ax.barh(range(len(rows)), values, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10) if min(values) / 2 <= t <= max(max(values), 1) * 2]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("measured / goal (>= 1: met; 'at most' goals inverted; capped at 10)")
    ax.set_title("inetkit: issue targets, this run")
    fig.tight_layout()
    fig.savefig(ctx.results_dir / "targets.png", dpi=110)
    plt.close(fig)
    return "targets.png"


def write(ctx: Context, command: str, started: float, elapsed: float) -> Path:
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    plot_targets(ctx)
    latest = ctx.results_dir / "latest.md"
    latest.write_text(render(ctx, command, started, elapsed))
    raw = {
        "command": command, "started": started, "elapsed": elapsed, "machine": machine(), "commit": commit(),
        "quick": ctx.quick, "status": {k: {"status": s, "seconds": t} for k, (s, t) in ctx.status.items()},
        "load": getattr(ctx, "load", {}), "measurements": [m.as_dict() for m in ctx.measurements],
        "targets": [t.as_dict() for t in ctx.targets], "notes": ctx.notes, "plots": ctx.plots, "raw": ctx.raw,
    }
    (ctx.results_dir / "latest.json").write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n")
    return latest


def update_readme(readme: Path, ctx: Context, command: str, started: float, elapsed: float) -> None:
    """Replace the text between the bench markers with this run's tables
    (image links rewritten relative to the README)."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{readme} has no {BEGIN} ... {END} section")
    body = render(ctx, command, started, elapsed, heading="###")
    rel = os.path.relpath(ctx.results_dir, readme.parent)
    body = re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", lambda mm: f"![{mm.group(1)}]({rel}/{mm.group(2)})", body)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + BEGIN + "\n" + body + END + tail)
