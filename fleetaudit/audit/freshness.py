"""How fresh a run's picture is: the age of every device's observation (pure).

A rolling run audits some devices now and carries the rest forward. Freshness says how
old the picture is: age percentiles over every listed device and the share older than
`max_age` (stale). Ages come in as a stream, so a million devices cost a histogram of a
few thousand counters, not a list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

_BUCKET_S = 60  # ages are counted per minute: percentiles within a minute


@dataclass(frozen=True, slots=True)
class Freshness:
    """Ages (seconds) of every device's observation, and the stale ones."""

    devices: int
    age_p50_s: float | None
    age_p95_s: float | None
    age_max_s: float | None
    stale: int
    fresh_share: float  # 1.0 when there is no device

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "devices": self.devices,
            "age_p50_s": self.age_p50_s,
            "age_p95_s": self.age_p95_s,
            "age_max_s": self.age_max_s,
            "stale": self.stale,
            "stale_share": round(1.0 - self.fresh_share, 6),
            "fresh_share": round(self.fresh_share, 6),
        }


def freshness(ages_s: Iterable[float], max_age_s: float | None) -> Freshness:
    """Percentiles of `ages_s` (to the minute, the max exact) and the share past max_age_s."""
    buckets: dict[int, int] = {}
    count = stale = 0
    oldest = -math.inf
    for age in ages_s:
        age = max(0.0, age)
        buckets[int(age // _BUCKET_S)] = buckets.get(int(age // _BUCKET_S), 0) + 1
        count += 1
        oldest = max(oldest, age)
        if max_age_s is not None and age > max_age_s:
            stale += 1
    if count == 0:
        return Freshness(0, None, None, None, 0, 1.0)
    return Freshness(
        devices=count,
        age_p50_s=_percentile(buckets, count, 0.50),
        age_p95_s=_percentile(buckets, count, 0.95),
        age_max_s=oldest,
        stale=stale,
        fresh_share=(count - stale) / count,
    )


def _percentile(buckets: dict[int, int], count: int, fraction: float) -> float:
    rank = max(1, math.ceil(fraction * count))
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return float(bucket * _BUCKET_S)
    return float(max(buckets) * _BUCKET_S)
