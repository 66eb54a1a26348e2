"""Per-action call statistics: counters and latency percentiles for the manifest.

Latencies go into logarithmic buckets (2% wide) instead of a list, so a run of millions
of calls keeps a few hundred integers per action and percentiles stay within 2%.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_BUCKET_GROWTH = 1.02
_LOG_GROWTH = math.log(_BUCKET_GROWTH)


@dataclass(slots=True)
class ActionStats:
    """What happened to the calls of one action. A call is one logical request."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    failures: int = 0
    # The quota pacing: seconds the shared schedule (other processes of the account) added
    # to this action's waits, and the span of its starts, for the share of the quota it got.
    quota: float = 0.0
    quota_wait_s: float = 0.0
    _starts: int = 0
    _first_start: float = 0.0
    _last_start: float = 0.0
    _latency_buckets: dict[int, int] = field(default_factory=dict)
    _latency_count: int = 0

    def record_start(self, now: float, shared_wait: float) -> None:
        """An attempt starts at `now` (seconds), after waiting `shared_wait` on others."""
        if self._starts == 0:
            self._first_start = now
        self._starts += 1
        self._last_start = now
        self.quota_wait_s += shared_wait

    def quota_share(self) -> float | None:
        """This action's start rate from its first call to its last, as a share of its quota
        (None under two calls): idle spells between calls count as time it did not use."""
        span = self._last_start - self._first_start
        if self._starts < 2 or span <= 0 or self.quota <= 0:
            return None
        return round((self._starts - 1) / span / self.quota, 3)

    def record_latency(self, millis: float) -> None:
        """One attempt's round trip in milliseconds."""
        bucket = 0 if millis < 1.0 else int(math.log(millis) / _LOG_GROWTH) + 1
        self._latency_buckets[bucket] = self._latency_buckets.get(bucket, 0) + 1
        self._latency_count += 1

    def latency_percentile(self, fraction: float) -> float | None:
        """The latency (ms) below which `fraction` of the attempts fell; None before any."""
        if self._latency_count == 0:
            return None
        rank = max(1, math.ceil(fraction * self._latency_count))
        seen = 0
        for bucket in sorted(self._latency_buckets):
            seen += self._latency_buckets[bucket]
            if seen >= rank:
                return _bucket_value(bucket)
        return _bucket_value(max(self._latency_buckets))  # unreachable in practice

    def as_dict(self) -> dict[str, Any]:
        """JSON-able counters and p50/p95/p99 latency in ms (None when nothing was sent)."""
        return {
            "calls": self.calls,
            "attempts": self.attempts,
            "retries": self.retries,
            "throttled": self.throttled,
            "failures": self.failures,
            "quota_share": self.quota_share(),
            "quota_wait_s": round(self.quota_wait_s, 3),
            "latency_ms_p50": self.latency_percentile(0.50),
            "latency_ms_p95": self.latency_percentile(0.95),
            "latency_ms_p99": self.latency_percentile(0.99),
        }


def _bucket_value(bucket: int) -> float:
    """The upper edge of a bucket, rounded to 0.1 ms."""
    if bucket == 0:
        return 1.0
    return round(_BUCKET_GROWTH**bucket, 1)


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Cheap totals over every action, for a progress line."""

    calls: int
    retries: int
    throttled: int
    failures: int


class ApiStats:
    """Statistics of every action the client called, keyed by action name."""

    __slots__ = ("_actions", "pacing")

    def __init__(self, actions: Iterable[str] = ()) -> None:
        self._actions: dict[str, ActionStats] = {action: ActionStats() for action in actions}
        # Where the quota was shared (store, account, share, why it degraded): the client's.
        self.pacing: dict[str, Any] = {}

    def action(self, name: str) -> ActionStats:
        """The (mutable) statistics of one action, created on first use."""
        stats = self._actions.get(name)
        if stats is None:
            stats = self._actions[name] = ActionStats()
        return stats

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Per-action statistics for manifest.json."""
        return {name: stats.as_dict() for name, stats in self._actions.items()}

    def snapshot(self) -> StatsSnapshot:
        """Totals over every action (a few additions: cheap enough for each progress tick)."""
        every = self._actions.values()
        return StatsSnapshot(
            calls=sum(stats.calls for stats in every),
            retries=sum(stats.retries for stats in every),
            throttled=sum(stats.throttled for stats in every),
            failures=sum(stats.failures for stats in every),
        )
