"""Rolling audits' pure parts: who goes first, how many fit, sampled intervals, freshness."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetaudit.audit.freshness import freshness
from fleetaudit.audit.rolling import (
    MARGIN_FRACTION,
    PUBLISH_MARGIN_S,
    LastSeen,
    Tier,
    plan_budget,
    priority,
    tier,
)
from fleetaudit.audit.sampling import choose_sample, sample_size, wilson

HOUR_MS = 3_600_000
NOW = 1_000 * HOUR_MS


def key(
    name: str, last: LastSeen | None, product: str = "pk", focus: str | None = None
) -> tuple[int, int, int]:
    return priority(product, name, last, focus_product=focus, now_ms=NOW, max_age_ms=72 * HOUR_MS)


@pytest.mark.parametrize(
    ("last", "in_focus", "expected"),
    [
        (None, False, Tier.NEVER_AUDITED),
        (LastSeen(NOW - 80 * HOUR_MS, had_problem=False), False, Tier.OVERDUE),
        (LastSeen(NOW - 80 * HOUR_MS, had_problem=True), True, Tier.OVERDUE),
        (LastSeen(NOW - 1 * HOUR_MS, had_problem=True), True, Tier.HAD_PROBLEM),
        (LastSeen(NOW - 1 * HOUR_MS, had_problem=False), True, Tier.FOCUS_PRODUCT),
        (LastSeen(NOW - 1 * HOUR_MS, had_problem=False), False, Tier.REST),
    ],
)
def test_tiers(last: LastSeen | None, in_focus: bool, expected: Tier) -> None:
    """Each device lands in the documented tier."""
    assert tier(last, in_focus=in_focus, now_ms=NOW, max_age_ms=72 * HOUR_MS) == expected


def test_priority_orders_tiers_then_staleness() -> None:
    """Never audited, overdue, had a problem, focus product, then the rest; stalest first."""
    devices = {
        "rest-old": key("rest-old", LastSeen(NOW - 48 * HOUR_MS, False)),
        "rest-new": key("rest-new", LastSeen(NOW - 2 * HOUR_MS, False)),
        "focus": key("focus", LastSeen(NOW - 2 * HOUR_MS, False), product="gate", focus="gate"),
        "problem": key("problem", LastSeen(NOW - 1 * HOUR_MS, True)),
        "overdue": key("overdue", LastSeen(NOW - 73 * HOUR_MS, False)),
        "never": key("never", None),
    }
    order = sorted(devices, key=devices.__getitem__)
    assert order == ["never", "overdue", "problem", "focus", "rest-old", "rest-new"]


def test_ties_are_broken_by_a_stable_hash() -> None:
    """Equal devices keep one order, the same every time it is computed."""
    last = LastSeen(NOW - HOUR_MS, False)
    names = [f"d{i}" for i in range(50)]
    first = sorted(names, key=lambda n: key(n, last))
    shuffled = random.Random(1).sample(names, len(names))
    assert first == sorted(shuffled, key=lambda n: key(n, last))
    assert first != names  # the hash, not the name, orders them


def test_round_robin_bounds_every_age() -> None:
    """Auditing the first B of N by priority each night, no device waits over ceil(N/B) nights."""
    n, budget, night = 100, 30, 24 * HOUR_MS
    rng = random.Random(3)
    last: dict[str, LastSeen | None] = {f"d{i}": None for i in range(n)}
    now = NOW
    worst = 0
    for _ in range(12):
        order = sorted(
            last,
            key=lambda d: priority(
                "pk", d, last[d], focus_product=None, now_ms=now, max_age_ms=None
            ),
        )
        for device in order[:budget]:
            last[device] = LastSeen(now, had_problem=rng.random() < 0.1)
        ages = [(now - s.observed_at_ms) // night for s in last.values() if s is not None]
        worst = max([worst, *ages])
        now += night
    assert worst <= -(-n // budget) - 1  # audited at least every ceil(N/B) nights


def test_budget_plan_keeps_a_margin_and_the_sweep_time() -> None:
    """A 4 h budget at 10/s, less the margin and a 60 s sweep."""
    plan = plan_budget(now_ms=0, deadline_ms=4 * HOUR_MS, per_device_rate=10.0, sweep_seconds=60)
    margin = PUBLISH_MARGIN_S + MARGIN_FRACTION * 4 * 3600
    assert plan.devices == int((4 * 3600 - margin - 60) * 10)
    assert plan.stop_starting_at_ms == int((4 * 3600 - margin) * 1000)


def test_budget_plan_past_the_deadline_audits_nothing() -> None:
    """A deadline already past (or too near) plans no device and stops at once."""
    plan = plan_budget(now_ms=10_000, deadline_ms=5_000, per_device_rate=10.0)
    assert plan.devices == 0
    assert plan.stop_starting_at_ms == 10_000


def test_wilson_interval_text() -> None:
    """An interval prints as share (low-high), in percent with one decimal."""
    assert str(wilson(62, 2000)) == "3.1% (2.4-4.0%)"
    assert str(wilson(0, 0)) == "0.0% (0.0-100.0%)"  # no trial, no evidence
    assert str(wilson(10, 200, population=1000)) == "5.0% (3.1-8.6%)"  # without replacement
    assert str(wilson(30, 500, population=500)) == "6.0% (6.0-6.0%)"  # the whole population
    with pytest.raises(ValueError, match="3 successes in 1 trials"):
        wilson(3, 1)


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_interval_holds_its_estimate(successes: int, extra: int) -> None:
    """The interval lies in 0..1 and contains the observed share."""
    trials = successes + extra
    interval = wilson(successes, trials)
    assert 0.0 <= interval.low <= interval.share <= interval.high <= 1.0


def test_sampled_interval_covers_the_true_share_about_95_percent_of_the_time() -> None:
    """In a seeded simulation, 400 samples of 400 from 5,000 devices: coverage ~95%."""
    population = [("pk", f"d{i}") for i in range(5_000)]
    rng = random.Random(7)
    drifting = set(rng.sample(range(5_000), 155))  # a true drift share of 3.1%
    truth = len(drifting) / len(population)
    covered = 0
    trials = 400
    for seed in range(trials):
        sample = choose_sample(population, 400, seed)
        hits = sum(1 for _, name in sample if int(name[1:]) in drifting)
        interval = wilson(hits, len(sample))
        covered += interval.low <= truth <= interval.high
    assert 0.92 <= covered / trials <= 0.98  # 95% within three standard errors (1.1%)


def test_sample_is_uniform_and_reproducible() -> None:
    """A seed gives the same sample; different seeds give different ones of the right size."""
    devices = [("pk", f"d{i}") for i in range(1000)]
    assert choose_sample(devices, 100, 1) == choose_sample(reversed(devices), 100, 1)
    assert choose_sample(devices, 100, 1) != choose_sample(devices, 100, 2)
    assert len(choose_sample(devices, 100, 3)) == 100


@pytest.mark.parametrize(
    ("spec", "population", "expected"),
    [(2000, 100_000, 2000), ("2%", 100_000, 2000), ("2.5%", 10, 1), (50, 10, 10), ("7", 9, 7)],
)
def test_sample_size(spec: str | int, population: int, expected: int) -> None:
    """A count or a percentage of the scope, never more than the scope."""
    assert sample_size(spec, population) == expected


def test_freshness_percentiles_and_stale_share() -> None:
    """Ages to the minute, the max exact, and the share older than max_age."""
    ages = [0.0] * 50 + [3600.0] * 45 + [100 * 3600.0] * 5
    result = freshness(ages, max_age_s=72 * 3600)
    assert result.devices == 100
    assert result.age_p50_s == 0.0
    assert result.age_p95_s == 3600.0
    assert result.age_max_s == 100 * 3600.0
    assert result.stale == 5
    assert result.fresh_share == pytest.approx(0.95)


def test_freshness_of_nothing() -> None:
    """No device: no percentiles, and nothing stale."""
    result = freshness([], max_age_s=None)
    assert (result.devices, result.age_p50_s, result.fresh_share) == (0, None, 1.0)
