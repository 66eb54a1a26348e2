"""A rate budget per API action, adaptive when the platform throttles.

Quota and concurrency are two knobs: this module only spaces call *starts* so that an
action never goes above its quota in any window, however short; how many calls are in
flight at once is the client's semaphore. Each call reserves the next start on an ideal
schedule 1/rate apart, so calls start evenly spaced (a bucket that let ten go at once
would be throttled by a platform counting per 100 ms window). The schedule, not the
moment a timer really fired, sets the next start: asyncio timers wake up to a
millisecond late, and a leaky bucket of capacity one (aiolimiter's) loses every late
wake-up for good, about 10% of a 100/s quota (measured: BENCHMARKS.md).

On a throttling answer the action pauses for the server's hint and its rate drops
multiplicatively; each answered call then adds a little back until the configured quota
is reached again (AIMD, as TCP does): the quota is shared with other processes of the
account, so the rate we may use is only discovered by probing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

Sleep = Callable[[float], Awaitable[object]]

# Spacing calls exactly 1/quota apart puts quota+1 starts in a closed one-second window;
# a hair of headroom keeps every window, and jitter on the wire, under the quota.
HEADROOM = 0.995
DECREASE = 0.7  # multiplicative decrease on throttling
INCREASE = 0.005  # additive increase per answered call, as a fraction of the quota
MIN_FRACTION = 0.05  # never slower than this fraction of the quota
# Calls in flight when the throttling began are all answered at once; they are one signal.
DECREASE_HOLD_SECONDS = 1.0


class ActionBudget:
    """The pace of one action: evenly spaced starts at an adaptive rate up to the quota."""

    __slots__ = ("_last_decrease", "_next_start", "_paused_until", "_quota", "_rate", "_sleep")

    def __init__(self, quota: float, *, sleep: Sleep = asyncio.sleep) -> None:
        if quota <= 0:
            raise ValueError("a quota must be positive")
        self._quota = quota * HEADROOM
        self._rate = self._quota
        self._next_start = float("-inf")  # loop time of the next free start slot
        self._paused_until = float("-inf")
        self._last_decrease = float("-inf")
        self._sleep = sleep

    @property
    def rate(self) -> float:
        """Calls per second this action may start now."""
        return self._rate

    async def acquire(self) -> None:
        """Wait for this action's next start slot (and any pause the server asked for)."""
        loop = asyncio.get_running_loop()
        # One sleep, not a loop: a pause extended meanwhile is caught by the next throttle,
        # and an injected sleep that does not move the loop's clock cannot spin here.
        if (wait := self._paused_until - loop.time()) > 0:
            await self._sleep(wait)
        # Reserve a slot before waiting: concurrent callers queue up on distinct slots, and
        # after an idle spell the schedule restarts from now (no burst). The slot wait is
        # the loop's own sleep, as pacing is real time even where retries sleep is injected.
        now = loop.time()
        start = max(now, self._next_start)
        self._next_start = start + 1.0 / self._rate
        if start > now:
            await asyncio.sleep(start - now)

    def throttled(self, retry_after: float | None) -> None:
        """The platform throttled a call: pause for its hint and slow down."""
        now = asyncio.get_running_loop().time()
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
        if now - self._last_decrease >= DECREASE_HOLD_SECONDS:
            self._last_decrease = now
            self._set_rate(max(self._quota * MIN_FRACTION, self._rate * DECREASE))

    def answered(self) -> None:
        """A call went through: probe back towards the quota."""
        if self._rate < self._quota:
            self._set_rate(min(self._quota, self._rate + self._quota * INCREASE))

    def _set_rate(self, rate: float) -> None:
        # Slots already reserved keep their spacing; the next reservation uses the new rate.
        self._rate = rate


class RateBudget:
    """One ActionBudget per action, from a quota mapping (calls per second)."""

    __slots__ = ("_budgets",)

    def __init__(self, quotas: Mapping[str, float], *, sleep: Sleep = asyncio.sleep) -> None:
        self._budgets = {action: ActionBudget(q, sleep=sleep) for action, q in quotas.items()}

    def __getitem__(self, action: str) -> ActionBudget:
        return self._budgets[action]

    def rates(self) -> dict[str, float]:
        """The current rate of every action (calls per second)."""
        return {action: budget.rate for action, budget in self._budgets.items()}
