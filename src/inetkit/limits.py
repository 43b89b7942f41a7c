"""Admission limits as pure bookkeeping: no sockets, no clock.

Every function takes ``now`` (a monotonic time in seconds) so the policy is
tested without sleeping, and the daemon, the fork worker and the datagram
model all share one implementation.

- ``SourceRateLimiter``: a token bucket per source address for *new*
  connections.  A source that opens connections faster than
  ``rate_per_source`` (after a burst of ``rate_burst``) is refused until its
  bucket refills; other sources are untouched.  This is the answer to
  inetd's ``cps`` / xinetd's ``cps`` / systemd's ``TriggerLimit*``, which all
  disable the *whole service* for everyone when one client floods it.
- ``ConcurrencyLimiter``: live connections per service and per source.
- ``RefusalLog``: decides which refusals are worth a log line: the first of a
  burst for a (source, reason) pair, then silence until that source has been
  quiet for ``quiet`` seconds, when the next refusal opens a new burst and its
  line reports how many were suppressed (a burst that never ends gets a line
  with its count every ``repeat`` seconds).  A flood therefore costs a few log
  lines, not one per packet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: most sources a rate limiter tracks; past this, full (idle) buckets are pruned
MAX_TRACKED_SOURCES = 65536


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class SourceRateLimiter:
    """Token bucket per source: ``rate`` new connections per second, ``burst`` at once.

    ``acquire(source, now)`` returns 0.0 when the source may connect (one
    token taken) or the number of seconds until its next token otherwise.
    """

    def __init__(self, rate: float, burst: int | None = None, max_sources: int = MAX_TRACKED_SOURCES) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        # default burst: one second's worth, at least one connection
        self.burst = float(burst if burst is not None and burst >= 1 else max(1, math.ceil(rate)))
        self.max_sources = max_sources
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = now - bucket.stamp
        if elapsed > 0:
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.stamp = now

    def acquire(self, source: str, now: float) -> float:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self.prune(now)
            bucket = self._buckets[source] = _Bucket(self.burst, now)
        else:
            self._refill(bucket, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def prune(self, now: float) -> None:
        """Forget sources whose bucket is full again (they are indistinguishable
        from new ones), so memory stays bounded under a spoofed-source flood."""
        full = [s for s, b in self._buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        for source in full:
            del self._buckets[source]
        if len(self._buckets) >= self.max_sources:
            # everyone is active: drop the oldest half rather than grow without bound
            oldest = sorted(self._buckets, key=lambda s: self._buckets[s].stamp)
            for source in oldest[: len(oldest) // 2]:
                del self._buckets[source]

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class ConcurrencyLimiter:
    """Live connections of one service, in total and per source."""

    max_total: int | None = None
    max_per_source: int | None = None
    total: int = 0
    per_source: dict[str, int] = field(default_factory=dict)

    def check(self, source: str) -> str | None:
        """The reason a new connection from ``source`` must be refused, or None."""
        if self.max_total is not None and self.total >= self.max_total:
            return "max_connections reached"
        if self.max_per_source is not None and self.per_source.get(source, 0) >= self.max_per_source:
            return "max_per_source reached"
        return None

    def acquire(self, source: str) -> None:
        self.total += 1
        self.per_source[source] = self.per_source.get(source, 0) + 1

    def release(self, source: str) -> None:
        self.total = max(0, self.total - 1)
        left = self.per_source.get(source, 1) - 1
        if left > 0:
            self.per_source[source] = left
        else:
            self.per_source.pop(source, None)


@dataclass
class _Burst:
    last: float
    logged: float
    suppressed: int = 0


class RefusalLog:
    """Which refusals to log: one line per burst per (source, reason)."""

    def __init__(self, quiet: float = 10.0, max_keys: int = 4096, repeat: float = 60.0) -> None:
        self.quiet = quiet
        #: a burst that never ends still gets a line this often, with its count
        self.repeat = repeat
        self.max_keys = max_keys
        self._bursts: dict[tuple[str, str], _Burst] = {}

    def refused(self, source: str, reason: str, now: float) -> int | None:
        """Record one refusal.  Returns None to stay silent, or (when this
        refusal deserves a log line: it opens a new burst, or the burst has
        gone on for ``repeat`` seconds since its last line) how many refusals
        of this (source, reason) went unlogged since the last line."""
        key = (source, reason)
        burst = self._bursts.get(key)
        if burst is not None and now - burst.last < self.quiet:
            burst.last = now
            if now - burst.logged < self.repeat:
                burst.suppressed += 1
                return None
            previous, burst.suppressed, burst.logged = burst.suppressed, 0, now
            return previous
        previous = burst.suppressed if burst is not None else 0
        if burst is None and len(self._bursts) >= self.max_keys:
            self._expire(now)
        self._bursts[key] = _Burst(now, now)
        return previous

    def _expire(self, now: float) -> None:
        stale = [k for k, b in self._bursts.items() if now - b.last >= self.quiet]
        for key in stale:
            del self._bursts[key]
        if len(self._bursts) >= self.max_keys:
            self._bursts.clear()

    def suppressed(self, source: str, reason: str) -> int:
        burst = self._bursts.get((source, reason))
        return burst.suppressed if burst is not None else 0
