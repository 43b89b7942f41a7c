"""Pure statistics and formatting for the bench harness (no I/O, no clock).

A *measurement* is one quantity (say "round trips/s") measured for several
*subjects* (inetkit async, xinetd, ...), each run several times.  The report
shows, per subject, the median and the min–max of its runs, and the ratio of
inetkit's median to the peer's median.  A *target* is one goal from an issue
("async >= 2x xinetd"): a measured value compared with a threshold, met or not.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class Summary:
    """Median and range of one subject's runs."""

    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def summarize(values: Iterable[float]) -> Summary | None:
    """Median, min and max of the finite values; None when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return Summary(statistics.median(finite), min(finite), max(finite), len(finite))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def cpu_per_op_us(cpu_seconds: float, ops: int) -> float | None:
    """Microseconds of CPU per operation; None when no operation was done."""
    if ops <= 0:
        return None
    return cpu_seconds * 1e6 / ops


def interleave(subjects: Sequence[str], runs: int) -> list[tuple[int, str]]:
    """The run order: every subject once per round, rounds repeated ``runs``
    times, and the order within a round rotated so that no subject always
    goes first (alternating inetkit and the peer run by run)."""
    order: list[tuple[int, str]] = []
    n = len(subjects)
    for r in range(runs):
        for i in range(n):
            order.append((r, subjects[(i + r) % n]))
    return order


# -- targets ------------------------------------------------------------------------


@dataclass
class Target:
    """One goal from an issue, with what was measured against it.

    ``value`` is the measured quantity (a ratio such as inetkit/peer, or an
    absolute figure such as seconds); the target is met when
    ``value OP threshold`` holds.  ``value`` None means not measured, and
    ``note`` says why.
    """

    issue: int
    goal: str
    op: str
    threshold: float
    value: float | None
    unit: str = "x"
    detail: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=", "<", ">"):
            raise ValueError(f"unknown comparison {self.op!r}")

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return {
            ">=": self.value >= self.threshold,
            "<=": self.value <= self.threshold,
            ">": self.value > self.threshold,
            "<": self.value < self.threshold,
        }[self.op]

    @property
    def verdict(self) -> str:
        met = self.met
        if met is None:
            return "not measured" + (f": {self.note}" if self.note else "")
        return "met" if met else "NOT met"

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue": self.issue, "goal": self.goal, "op": self.op, "threshold": self.threshold,
            "value": self.value, "unit": self.unit, "detail": self.detail, "note": self.note,
            "met": self.met,
        }


# -- formatting -----------------------------------------------------------------


def fmt_number(value: float | None, digits: int = 3) -> str:
    """A compact human number: 3 significant digits, k above 10,000, M from
    the point where k would need 4 digits (999.5k rounds to 1.00M)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    magnitude = abs(value)
    if magnitude >= 999_500:
        return f"{value / 1e6:.{digits}g}M"
    if magnitude >= 10_000:
        return f"{value / 1e3:.{digits}g}k"
    if magnitude == 0:
        return "0"
    if magnitude >= 10 ** digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def fmt_summary(summary: Summary | None, unit: str = "") -> str:
    """``median (min–max) unit``, or a dash when nothing was measured."""
    if summary is None:
        return "–"
    suffix = f" {unit}" if unit else ""
    if summary.n == 1 or summary.low == summary.high:
        return f"{fmt_number(summary.median)}{suffix}"
    return f"{fmt_number(summary.median)} ({fmt_number(summary.low)}–{fmt_number(summary.high)}){suffix}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def fmt_target_value(target: Target) -> str:
    if target.value is None:
        return "–"
    if target.unit == "x":
        return fmt_ratio(target.value)
    return f"{fmt_number(target.value)} {target.unit}".rstrip()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; ``|`` inside cells is escaped."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, table has {len(headers)} columns")
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return "\n".join(lines)


def targets_table(targets: Sequence[Target]) -> str:
    rows = []
    for t in targets:
        goal = f"{t.op} {fmt_number(t.threshold)}{'x' if t.unit == 'x' else ' ' + t.unit}"
        rows.append([f"#{t.issue}", t.goal, goal, fmt_target_value(t), t.verdict, t.detail])
    return markdown_table(["issue", "target", "goal", "measured", "verdict", "detail"], rows)


@dataclass
class Measurement:
    """One quantity measured for several subjects over several runs."""

    scenario: str
    title: str
    unit: str
    #: subject -> values of each run, in run order
    runs: dict[str, list[float]] = field(default_factory=dict)
    #: subject -> extra per-subject text (e.g. server CPU per op, client CPU)
    notes: dict[str, str] = field(default_factory=dict)
    #: which subject the ratios are taken against (None: no ratio column)
    reference: str | None = None
    higher_is_better: bool = True

    def add(self, subject: str, value: float | None) -> None:
        self.runs.setdefault(subject, [])
        if value is not None:
            self.runs[subject].append(value)

    def summary(self, subject: str) -> Summary | None:
        return summarize(self.runs.get(subject, []))

    def ratio_to(self, subject: str, reference: str) -> float | None:
        a, b = self.summary(subject), self.summary(reference)
        return ratio(a.median if a else None, b.median if b else None)

    def rows(self) -> list[list[str]]:
        out = []
        for subject in self.runs:
            summary = self.summary(subject)
            r = "–"
            if self.reference and subject != self.reference:
                r = fmt_ratio(self.ratio_to(subject, self.reference))
            elif self.reference:
                r = "1.00x (ref)"
            out.append([subject, fmt_summary(summary, self.unit), r, self.notes.get(subject, "")])
        return out

    def table(self) -> str:
        ref = f"ratio to {self.reference}" if self.reference else "ratio"
        return markdown_table(["subject", f"{self.title} median (min–max)", ref, "notes"], self.rows())

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "title": self.title, "unit": self.unit, "runs": self.runs,
            "summaries": {s: (self.summary(s).as_dict() if self.summary(s) else None) for s in self.runs},
            "notes": self.notes, "reference": self.reference,
        }
