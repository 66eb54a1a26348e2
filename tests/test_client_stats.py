"""Per-action call statistics: latency percentiles within their 2% buckets, cheap totals."""

from __future__ import annotations

import orjson
import pytest

from fleetaudit.api.stats import ActionStats, ApiStats


def test_percentiles_within_two_percent() -> None:
    """p50/p95/p99 of 1..1000 ms land within 2% of the exact values."""
    stats = ActionStats()
    for millis in range(1, 1001):
        stats.record_latency(float(millis))
    assert stats.latency_percentile(0.50) == pytest.approx(500, rel=0.02)
    assert stats.latency_percentile(0.95) == pytest.approx(950, rel=0.02)
    assert stats.latency_percentile(0.99) == pytest.approx(990, rel=0.02)


def test_no_latency_before_any_call() -> None:
    """An action never called reports None percentiles, not zero."""
    assert ActionStats().as_dict()["latency_ms_p50"] is None


def test_as_dict_is_json_ready() -> None:
    """as_dict() serialises to JSON as it is, keyed by action."""
    stats = ApiStats(["QueryOTAFirmware"])
    stats.action("QueryOTAFirmware").calls += 2
    stats.action("QueryOTAFirmware").record_latency(12.5)
    decoded = orjson.loads(orjson.dumps(stats.as_dict()))
    assert decoded["QueryOTAFirmware"]["calls"] == 2


def test_snapshot_sums_every_action() -> None:
    """snapshot() totals the counters of every action."""
    stats = ApiStats()
    stats.action("A").retries += 2
    stats.action("B").retries += 3
    stats.action("B").throttled += 1
    snapshot = stats.snapshot()
    assert (snapshot.retries, snapshot.throttled, snapshot.calls) == (5, 1, 0)
