"""Rolling audits: which devices a bounded run audits first, and how many fit (pure).

A fleet larger than a night cannot be asked for every device's module versions every
night. A rolling run audits as many devices as its budget allows, in the order `priority`
gives, and carries every other device forward from its last observation.

Who goes first (`priority`, lowest first), ties broken by a stable hash of the device so
that equal devices keep one order from night to night and none is starved by chance:

1. devices never audited (no observation in any earlier run);
2. devices overdue: last observed more than `max_age` ago (stale), stalest first. This tier is what
   bounds every device's age: whatever the tiers below ask for, a device that falls due is
   audited before them;
3. devices that had an unfinished task or a finding at their last audit (a problem is
   checked again soonest), stalest first;
4. devices of the focus product (the gate's `product_key`), stalest first;
5. the rest, stalest first.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import IntEnum


class Tier(IntEnum):
    """Why a device goes where it goes; lower goes first."""

    NEVER_AUDITED = 0
    OVERDUE = 1
    HAD_PROBLEM = 2
    FOCUS_PRODUCT = 3
    REST = 4


@dataclass(frozen=True, slots=True)
class LastSeen:
    """What the earlier runs say of one device: when it was last observed, and how it was."""

    observed_at_ms: int
    had_problem: bool  # an unfinished task or a finding at that observation


def stable_hash(product_key: str, device_name: str) -> int:
    """A 64-bit hash of a device that every process and night agrees on."""
    digest = hashlib.blake2b(f"{product_key}/{device_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def tier(last: LastSeen | None, *, in_focus: bool, now_ms: int, max_age_ms: int | None) -> Tier:
    """The tier of a device (module docstring)."""
    if last is None:
        return Tier.NEVER_AUDITED
    if max_age_ms is not None and now_ms - last.observed_at_ms > max_age_ms:
        return Tier.OVERDUE
    if last.had_problem:
        return Tier.HAD_PROBLEM
    if in_focus:
        return Tier.FOCUS_PRODUCT
    return Tier.REST


def priority(
    product_key: str,
    device_name: str,
    last: LastSeen | None,
    *,
    focus_product: str | None,
    now_ms: int,
    max_age_ms: int | None,
) -> tuple[int, int, int]:
    """The sort key of a device: (tier, last observed, stable hash); lowest goes first."""
    in_focus = focus_product is not None and product_key == focus_product
    level = tier(last, in_focus=in_focus, now_ms=now_ms, max_age_ms=max_age_ms)
    observed = last.observed_at_ms if last is not None else 0
    return int(level), observed, stable_hash(product_key, device_name)


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """How many device audits fit before a deadline, and when to stop starting them."""

    devices: int  # device audits the time allows (at the per-device actions' quota)
    stop_starting_at_ms: int  # start no device after this; what is in flight is given up
    seconds_for_audits: float


# Time kept back at the end: in-flight calls are given up at `stop_starting_at_ms`, and
# the carry-forward and publishing need this long at 1M devices (BENCHMARKS.md).
PUBLISH_MARGIN_S = 30.0
MARGIN_FRACTION = 0.02  # and a share of the budget, for pacing that runs below the quota


def plan_budget(
    *, now_ms: int, deadline_ms: int, per_device_rate: float, sweep_seconds: float = 0.0
) -> BudgetPlan:
    """The devices a run can audit between now and the deadline.

    `per_device_rate` is the per-device actions' quota (calls/s; one call per device and
    action, the actions paced in parallel); `sweep_seconds` the time the sweep's own calls
    take first.
    """
    total_s = max(0.0, (deadline_ms - now_ms) / 1000)
    margin_s = PUBLISH_MARGIN_S + MARGIN_FRACTION * total_s
    audits_s = max(0.0, total_s - margin_s - sweep_seconds)
    stop_ms = now_ms + int((total_s - margin_s) * 1000)
    return BudgetPlan(
        devices=math.floor(audits_s * per_device_rate),
        stop_starting_at_ms=max(now_ms, stop_ms),
        seconds_for_audits=audits_s,
    )
