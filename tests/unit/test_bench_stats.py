"""The bench harness's pure statistics and formatting (bench/stats.py).

No timing is asserted here: these check the arithmetic and the tables the
harness writes into bench/results/latest.md and the README.
"""

from __future__ import annotations

import math

import pytest

from bench.stats import (
    Measurement,
    Target,
    cpu_per_op_us,
    fmt_number,
    fmt_summary,
    interleave,
    markdown_table,
    percentile,
    ratio,
    summarize,
    targets_table,
)


def test_summarize_median_and_range_ignoring_missing_values() -> None:
    s = summarize([3.0, 1.0, None, float("nan"), 2.0, 10.0])  # type: ignore[list-item]
    assert s is not None
    assert (s.median, s.low, s.high, s.n) == (2.5, 1.0, 10.0, 4)
    assert summarize([]) is None
    assert summarize([float("inf")]) is None


@pytest.mark.parametrize(("q", "expected"), [(0, 1.0), (50, 3.0), (100, 5.0), (25, 2.0), (99, 4.96)])
def test_percentile_interpolates_between_ranks(q: float, expected: float) -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], q) == pytest.approx(expected)


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_ratio_and_cpu_per_op() -> None:
    assert ratio(6.0, 3.0) == 2.0
    assert ratio(None, 3.0) is None
    assert ratio(1.0, 0) is None
    assert cpu_per_op_us(0.5, 100_000) == pytest.approx(5.0)
    assert cpu_per_op_us(1.0, 0) is None


def test_interleave_runs_every_subject_each_round_and_rotates_the_first() -> None:
    order = interleave(["a", "b", "c"], 3)
    assert len(order) == 9
    rounds = [[s for r, s in order if r == k] for k in range(3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert [r[0] for r in rounds] == ["a", "b", "c"]


@pytest.mark.parametrize(("op", "value", "met"), [
    (">=", 2.0, True), (">=", 1.99, False), ("<=", 1.2, True), ("<", 0.5, False), (">", 0.51, True),
])
def test_target_verdicts(op: str, value: float, met: bool) -> None:
    threshold = {">=": 2.0, "<=": 1.2, "<": 0.5, ">": 0.5}[op]
    t = Target(2, "goal", op, threshold, value)
    assert t.met is met
    assert t.verdict == ("met" if met else "NOT met")


def test_unmeasured_target_says_why() -> None:
    t = Target(5, "tftp vs in.tftpd", ">=", 1.0, None, note="in.tftpd missing")
    assert t.met is None
    assert t.verdict == "not measured: in.tftpd missing"
    with pytest.raises(ValueError):
        Target(5, "x", "==", 1.0, 1.0)


def test_fmt_number_is_compact() -> None:
    assert fmt_number(157_234.0) == "157k"
    assert fmt_number(12_345_678.0) == "12.3M"
    assert fmt_number(1_180_000.0) == "1.18M"  # not "1.18e+03k"
    assert fmt_number(999_400.0) == "999k"
    assert fmt_number(999_600.0) == "1M"
    assert fmt_number(3.14159) == "3.14"
    assert fmt_number(0) == "0"
    assert fmt_number(None) == "–"
    assert fmt_number(math.nan) == "–"
    assert fmt_number(1234.0) == "1234"


def test_fmt_summary_shows_median_and_range() -> None:
    assert fmt_summary(summarize([1.0, 2.0, 3.0]), "s") == "2 (1–3) s"
    assert fmt_summary(summarize([2.0]), "s") == "2 s"
    assert fmt_summary(None) == "–"


def test_markdown_table_escapes_pipes_and_checks_widths() -> None:
    text = markdown_table(["a", "b"], [["x|y", "z"]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | z |"]
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [["only one"]])


def test_measurement_rows_carry_ratio_to_reference() -> None:
    m = Measurement("echo", "round trips/s", "rt/s", reference="xinetd")
    for v in (100.0, 120.0, 110.0):
        m.add("inetkit", v)
    for v in (50.0, 55.0, 60.0):
        m.add("xinetd", v)
    m.add("broken", None)
    rows = {r[0]: r for r in m.rows()}
    assert rows["inetkit"][1] == "110 (100–120) rt/s"
    assert rows["inetkit"][2] == "2.00x"
    assert rows["xinetd"][2] == "1.00x (ref)"
    assert rows["broken"][1] == "–"
    assert m.ratio_to("inetkit", "xinetd") == pytest.approx(2.0)
    assert m.as_dict()["summaries"]["broken"] is None


def test_targets_table_lists_goal_measure_and_verdict() -> None:
    table = targets_table([
        Target(2, "async vs xinetd", ">=", 2.0, 0.8, detail="80k vs 100k"),
        Target(3, "RSS per connection", "<=", 10.0, 3.0, unit="KiB"),
    ])
    lines = table.splitlines()
    assert lines[2] == "| #2 | async vs xinetd | >= 2x | 0.80x | NOT met | 80k vs 100k |"
    assert lines[3] == "| #3 | RSS per connection | <= 10 KiB | 3 KiB | met |  |"
