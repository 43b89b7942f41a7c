"""The pure admission bookkeeping (inetkit.limits): time is passed in, no sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inetkit.limits import ConcurrencyLimiter, RefusalLog, SourceRateLimiter


def test_bucket_allows_burst_then_refuses_then_refills() -> None:
    rl = SourceRateLimiter(rate=2.0, burst=3)
    assert [rl.acquire("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.acquire("a", 0.0)
    assert wait == pytest.approx(0.5)  # one token every 1/rate s
    assert rl.acquire("a", 0.25) == pytest.approx(0.25)
    assert rl.acquire("a", 0.5) == 0.0
    assert rl.acquire("a", 0.5) > 0


def test_bucket_is_per_source() -> None:
    rl = SourceRateLimiter(rate=1.0, burst=1)
    assert rl.acquire("10.0.0.1", 0.0) == 0.0
    assert rl.acquire("10.0.0.1", 0.0) > 0
    # another source is untouched by the first one's flood
    assert rl.acquire("10.0.0.2", 0.0) == 0.0


def test_default_burst_is_one_seconds_worth() -> None:
    rl = SourceRateLimiter(rate=5.0)
    assert sum(rl.acquire("a", 0.0) == 0.0 for _ in range(10)) == 5
    with pytest.raises(ValueError):
        SourceRateLimiter(rate=0)


def test_tracked_sources_stay_bounded() -> None:
    rl = SourceRateLimiter(rate=1.0, burst=1, max_sources=100)
    for i in range(1000):
        rl.acquire(f"10.0.{i // 256}.{i % 256}", float(i) * 0.001)
    assert len(rl) <= 100


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.5, 100), burst=st.integers(1, 20),
       gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200))
def test_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(rate: float, burst: int, gaps: list[float]) -> None:
    rl = SourceRateLimiter(rate=rate, burst=burst)
    now = 0.0
    admitted = 0
    for gap in gaps:
        now += gap
        if rl.acquire("x", now) == 0.0:
            admitted += 1
        assert admitted <= burst + rate * now + 1e-6


def test_concurrency_limits() -> None:
    c = ConcurrencyLimiter(max_total=3, max_per_source=2)
    assert c.check("a") is None
    c.acquire("a")
    c.acquire("a")
    assert c.check("a") == "max_per_source reached"
    assert c.check("b") is None
    c.acquire("b")
    assert c.check("c") == "max_connections reached"
    c.release("a")
    assert c.check("c") is None and c.per_source == {"a": 1, "b": 1}
    c.release("a")
    c.release("b")
    assert c.total == 0 and c.per_source == {}


def test_refusals_logged_once_per_burst() -> None:
    log = RefusalLog(quiet=10.0)
    assert log.refused("a", "rate", 0.0) == 0  # first: log it
    assert [log.refused("a", "rate", t) for t in (0.1, 1.0, 5.0, 14.0)] == [None] * 4  # keeps the burst alive
    assert log.refused("b", "rate", 1.0) == 0  # another source has its own burst
    assert log.refused("a", "max_per_source reached", 1.0) == 0  # and another reason
    # quiet for 10 s: the next refusal opens a new burst and tells what was suppressed
    assert log.refused("a", "rate", 24.5) == 4
    assert log.refused("a", "rate", 24.6) is None


def test_refusal_log_memory_is_bounded() -> None:
    log = RefusalLog(quiet=1.0, max_keys=50)
    for i in range(500):
        log.refused(f"s{i}", "rate", float(i) * 0.01)
    assert len(log._bursts) <= 50


def test_an_endless_burst_is_summarised_every_repeat_seconds() -> None:
    log = RefusalLog(quiet=10.0, repeat=60.0)
    assert log.refused("a", "rate", 0.0) == 0
    lines = [t for t in range(1, 200) if log.refused("a", "rate", float(t)) is not None]
    assert lines == [60, 120, 180]  # one line a minute while it lasts
    assert log.suppressed("a", "rate") == 19  # 181..199 since the last line
