"""The bench's shared run state: what was measured, which targets, which
plots, which notes; plus the "run every subject, alternating, several times"
loop every scenario uses."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.peers import PeerMissing
from bench.procs import Server
from bench.stats import Measurement, Target, interleave


@dataclass
class Context:
    quick: bool
    results_dir: Path
    measurements: list[Measurement] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    #: scenario -> markdown paragraphs (method, caveats) shown under its tables
    notes: dict[str, list[str]] = field(default_factory=dict)
    #: scenario -> extra markdown tables (e.g. a model x clients grid)
    tables: dict[str, list[str]] = field(default_factory=dict)
    #: scenario -> PNG file names in results_dir
    plots: dict[str, list[str]] = field(default_factory=dict)
    #: scenario -> raw extra data for the JSON file
    raw: dict[str, Any] = field(default_factory=dict)
    #: scenario -> (status, seconds)
    status: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: scenario -> 1-minute load average before and after it
    load: dict[str, tuple[float, float]] = field(default_factory=dict)

    def runs(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def measurement(self, scenario: str, title: str, unit: str, reference: str | None = None,
                    higher_is_better: bool = True) -> Measurement:
        m = Measurement(scenario, title, unit, reference=reference, higher_is_better=higher_is_better)
        self.measurements.append(m)
        return m

    def target(self, *args: Any, **kwargs: Any) -> Target:
        t = Target(*args, **kwargs)
        self.targets.append(t)
        return t

    def note(self, scenario: str, text: str) -> None:
        self.notes.setdefault(scenario, []).append(text)

    def table(self, scenario: str, markdown: str) -> None:
        self.tables.setdefault(scenario, []).append(markdown)

    def plot(self, scenario: str, filename: str) -> None:
        self.plots.setdefault(scenario, []).append(filename)


def say(text: str) -> None:
    """Progress on stderr (the results go to files)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def start_all(stack: ExitStack, ctx: Context, scenario: str,
              starters: dict[str, Callable[[], Server]]) -> dict[str, Server]:
    """Start every subject's server; a missing peer is noted, not fatal."""
    servers: dict[str, Server] = {}
    for label, start in starters.items():
        try:
            server = start()
        except PeerMissing as exc:
            say(f"{scenario}: {label}: {exc}")
            ctx.note(scenario, f"{label}: not measured ({exc}).")
            continue
        stack.callback(server.stop)
        servers[label] = server
    return servers


def alternate(ctx: Context, subjects: list[str], runs: int, measure: Callable[[int, str], None],
              label: str = "") -> None:
    """Call ``measure(run, subject)`` for every subject ``runs`` times, the
    order rotated every round so no subject always runs first."""
    order = interleave(subjects, runs)
    for i, (run, subject) in enumerate(order):
        say(f"{label} run {run + 1}/{runs}: {subject} ({i + 1}/{len(order)})")
        measure(run, subject)
