"""A rate budget per API action: evenly spaced starts at an adaptive rate, on a shared schedule.

Quota and concurrency are two knobs: this module only spaces call *starts* so that an
action never goes above its quota in any window, however short; how many calls are in
flight at once is the client's semaphore.

Two mechanisms, one on top of the other:

- **The schedule** (schedule.py) hands out start slots 1/rate apart. With a shared store
  every fleetaudit process of the account books its slots on the same schedule, so together
  they stay under the quota. The schedule, not the moment a timer really fired, sets the
  next start: asyncio timers wake up to a millisecond late, and a leaky bucket of capacity
  one (aiolimiter's) loses every late wake-up for good (measured: BENCHMARKS.md).
- **The pace** (`Pace`, pure) is this process's idea of the rate it may use: other tenants
  of the account that are not fleetaudit spend the quota too, and only throttling tells. A
  throttling episode lowers the rate once (calls answered together are one signal) and the
  rate then grows back on a cubic curve of the time since (TCP CUBIC, RFC 9438): flat near
  the rate that was throttled, so probing a shared quota costs few throttled calls, then
  steeply up, so a freed quota is used again within seconds.

A process holds at most `share` turns of booked slots ahead per action, a turn being one
slot or, at high quotas, TURN_SECONDS' worth of them. That bounds what a killed process
leaks (its booked slots, well under a second) and what a throttle wastes (slots booked at
the old rate are booked again), and it makes the shared schedule fair: processes take
turns, and one with share 4 gets four turns to another's one. (One slot a turn at 10 000
calls/s made every call wait on the one before it: 13.1 s against 9.8 s for 20k calls.)
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping

from fleetaudit.api.schedule import LocalSchedule, Schedule, horizon
from fleetaudit.api.stats import ActionStats

Sleep = Callable[[float], Awaitable[object]]

# Spacing calls exactly 1/quota apart puts quota+1 starts in a closed one-second window;
# a hair of headroom keeps every window, and jitter on the wire, under the quota.
HEADROOM = 0.995
# CUBIC's beta and C (C as a fraction of the quota per second cubed), chosen by simulating
# the emulator's token bucket with a tenant at half the quota (tests/test_pacing.py runs the
# same simulation), then measured against real processes (BENCHMARKS.md "Shared quota"):
# 1.6-1.8% of the calls throttled beside the tenant, 97% of the ideal share, and the rate
# back above 90% of the quota 3.6-3.9 s after the tenant stops. A flatter curve throttles
# less but recovers slower, a steeper one the reverse.
DECREASE = 0.35
GROWTH = 0.007
MIN_FRACTION = 0.05  # never slower than this fraction of the quota
TURN_SECONDS = 0.05  # at high quotas a turn on the shared schedule is this much time
# An episode shorter than this says too little about the rate left to us to learn from.
EPISODE_MIN_S = 2.0


class Pace:
    """The rate one action may use now: the quota, lowered on throttling, regrown (pure).

    Every method takes `now` (any monotonic clock in seconds), so tests drive it directly.
    """

    __slots__ = (
        "_answered",
        "_decreased_at",
        "_drop",
        "_paused_until",
        "_peak",
        "epoch",
        "quota",
    )

    def __init__(self, quota: float) -> None:
        if quota <= 0:
            raise ValueError("a quota must be positive")
        self.quota = quota * HEADROOM
        self._peak = self.quota  # the rate at the last throttling (CUBIC's W_max)
        self._drop = 0.0  # how far below the peak the rate was set at the last throttling
        self._answered = 0  # calls answered since the last throttling
        self._decreased_at: float | None = None
        self._paused_until = -math.inf
        # Counts throttling episodes: a slot booked in an older epoch is booked again.
        self.epoch = 0

    def rate(self, now: float) -> float:
        """Calls per second this action may start at `now`."""
        if self._decreased_at is None:
            return self.quota
        growth = GROWTH * self.quota
        k = math.cbrt(self._drop / growth)  # when the curve is back at the peak
        cubic = self._peak + growth * (now - self._decreased_at - k) ** 3
        return min(self.quota, max(self.quota * MIN_FRACTION, cubic))

    def answered(self) -> None:
        """A call went through (counted to learn the rate the platform really leaves us)."""
        self._answered += 1

    def pause_left(self, now: float) -> float:
        """Seconds the server asked this action to wait, from `now` (0 when none)."""
        return max(0.0, self._paused_until - now)

    def throttled(self, now: float, retry_after: float | None, sent_at: float) -> None:
        """The platform throttled a call sent at `sent_at`: pause for its hint; slow down.

        A call sent before the last decrease was sent at the old rate: its throttle is part
        of the episode already answered, not a new signal. One sent after it says the lower
        rate is still too high, at once (a fixed hold would let it overrun for a second).
        """
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
        if self._decreased_at is not None and sent_at < self._decreased_at:
            return
        current = self.rate(now)
        # Throttled below the last peak: someone else takes more now; aim lower (CUBIC's
        # fast convergence), else the next probe overshoots the same way.
        peak = current if current >= self._peak else current * (1.0 + DECREASE) / 2.0
        if self._decreased_at is not None and now - self._decreased_at >= EPISODE_MIN_S:
            # The platform's bucket lends a second of calls, so the rate at which a throttle
            # comes is above what is really left to us; the rate answered over the whole
            # episode is what is left (BENCHMARKS.md "Shared quota": 3.3% -> 2.2% throttled
            # beside a tenant at half the quota).
            peak = min(peak, max(current * DECREASE, self._answered / (now - self._decreased_at)))
        self._peak = peak
        self._answered = 0
        self._drop = self._peak - current * DECREASE
        self._decreased_at = now
        self.epoch += 1


class ActionBudget:
    """One action's start slots: booked on the schedule at the pace's rate, share at a time."""

    __slots__ = ("_action", "_ahead", "_clock", "_own_next", "_pace", "_schedule", "_sleep")

    def __init__(
        self,
        action: str,
        quota: float,
        *,
        schedule: Schedule | None = None,
        share: int = 1,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._action = action
        self._pace = Pace(quota)
        self._schedule = schedule or LocalSchedule()
        self._ahead = asyncio.Semaphore(share * max(1, math.ceil(quota * TURN_SECONDS)))
        self._sleep = sleep
        self._clock = clock
        self._own_next = -math.inf  # when this process alone would start its next call

    @property
    def rate(self) -> float:
        """Calls per second this action may start now."""
        return self._pace.rate(self._now())

    @property
    def quota(self) -> float:
        """The most this action starts per second (the quota less the headroom)."""
        return self._pace.quota

    async def acquire(self, stats: ActionStats | None = None) -> None:
        """Wait for this action's next start slot (and any pause the server asked for)."""
        async with self._ahead:
            while True:
                # One pause sleep per booking, then book: an injected sleep that does not
                # move the clock cannot spin here (only a new throttle books again).
                if (pause := self._pace.pause_left(self._now())) > 0:
                    await self._sleep(pause)
                now = self._now()
                epoch = self._pace.epoch
                interval = 1.0 / self._pace.rate(now)
                # A schedule never books further ahead than `horizon` (schedule.book); the cap
                # is the backstop against a store that says otherwise.
                wait = min(await self._schedule.reserve(self._action, interval), horizon(interval))
                # Others' bookings: how much later than this process alone would start.
                shared_wait = max(0.0, wait - max(0.0, self._own_next - now))
                self._own_next = now + wait + interval
                if wait > 0:
                    # The slot wait is the loop's own sleep: pacing is real time even where
                    # the retries' sleep is injected.
                    await asyncio.sleep(wait)
                if self._pace.epoch == epoch:
                    if stats is not None:
                        stats.record_start(self._now(), shared_wait)
                    return
                # Throttled while this slot waited: it was booked at the old rate.

    def throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """The platform throttled a call sent at `sent_at` (loop time; None: just now)."""
        now = self._now()
        self._pace.throttled(now, retry_after, now if sent_at is None else sent_at)

    def answered(self) -> None:
        """A call of this action went through."""
        self._pace.answered()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()


class RateBudget:
    """One ActionBudget per action, from a quota mapping (calls per second)."""

    __slots__ = ("_budgets",)

    def __init__(
        self,
        quotas: Mapping[str, float],
        *,
        schedule: Schedule | None = None,
        share: int = 1,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        schedule = schedule or LocalSchedule()
        self._budgets = {
            action: ActionBudget(action, q, schedule=schedule, share=share, sleep=sleep)
            for action, q in quotas.items()
        }

    def __getitem__(self, action: str) -> ActionBudget:
        return self._budgets[action]

    def rates(self) -> dict[str, float]:
        """The current rate of every action (calls per second)."""
        return {action: budget.rate for action, budget in self._budgets.items()}
