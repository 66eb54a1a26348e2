"""Quota pacing measured on an event loop with virtual time: no sleeps, no wall clock."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from fleetaudit.api.pacing import ActionBudget, RateBudget

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """A selector whose wait moves a virtual clock to the next timer instead of blocking."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("nothing scheduled and nothing ready: the test would hang")
        # A real clock always moves a little between loop turns; without that, a timer
        # re-armed for "now" (aiolimiter's float residue) would spin forever.
        self.now += max(timeout, 1e-7)
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time() only advances when every task is waiting on a timer."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def acquisition_times(budget: ActionBudget, count: int) -> list[float]:
    """Start `count` tasks at once, each acquiring one slot; the loop time of each grant."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await budget.acquire()
        times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(count)))
    return sorted(times)


def most_in_window(times: list[float], width: float) -> int:
    """The largest number of grants in any half-open window of `width` seconds."""
    best = 0
    for index, start in enumerate(times):
        inside = sum(1 for t in times[index:] if t < start + width)
        best = max(best, inside)
    return best


def test_hundred_calls_at_ten_per_second_take_ten_seconds() -> None:
    """100 calls at 10/s are spread over ~9.9 virtual seconds."""
    times = run_virtual(lambda: acquisition_times(ActionBudget(10.0), 100))
    assert times[-1] - times[0] == pytest.approx(9.9, rel=0.01)


def test_no_window_exceeds_the_quota() -> None:
    """No one-second window holds more than 10 starts, no 100 ms window more than one."""
    times = run_virtual(lambda: acquisition_times(ActionBudget(10.0), 100))
    assert most_in_window(times, 1.0) <= 10
    assert most_in_window(times, 0.1) <= 1


def test_no_burst_after_idle() -> None:
    """After a long idle spell the budget still lets one call go at a time, not a burst."""

    async def main() -> list[float]:
        budget = ActionBudget(10.0)
        await acquisition_times(budget, 5)
        await asyncio.sleep(30.0)
        return await acquisition_times(budget, 20)

    assert most_in_window(run_virtual(main), 0.1) <= 1


def test_throttling_slows_the_action() -> None:
    """A throttling answer lowers the rate multiplicatively."""

    async def main() -> float:
        budget = ActionBudget(10.0)
        budget.throttled(None)
        return budget.rate

    assert run_virtual(main) < 9.0


def test_throttling_pauses_for_the_hint() -> None:
    """After a hint of 2 s the action starts nothing for 2 virtual seconds."""

    async def main() -> float:
        budget = ActionBudget(10.0)
        loop = asyncio.get_running_loop()
        budget.throttled(2.0)
        await budget.acquire()
        return loop.time()

    assert run_virtual(main) >= 2.0


def test_rate_recovers_to_quota() -> None:
    """Answered calls probe the rate back up to the quota, never above it."""

    async def main() -> tuple[float, float]:
        budget = ActionBudget(10.0)
        budget.throttled(None)
        slowed = budget.rate
        for _ in range(1000):
            budget.answered()
        return slowed, budget.rate

    slowed, recovered = run_virtual(main)
    assert slowed < recovered <= 10.0
    assert recovered == pytest.approx(10.0, rel=0.01)


def test_simultaneous_throttles_count_once() -> None:
    """Many calls throttled at the same moment lower the rate once, not once each."""

    async def main() -> float:
        budget = ActionBudget(10.0)
        for _ in range(20):
            budget.throttled(None)
        return budget.rate

    assert run_virtual(main) == pytest.approx(10.0 * 0.995 * 0.7)


def test_actions_are_paced_independently() -> None:
    """Each action has its own budget: 20/s for one does not slow the other's 10/s."""

    async def main() -> tuple[list[float], list[float]]:
        budget = RateBudget({"A": 10.0, "B": 20.0})
        return await asyncio.gather(
            acquisition_times(budget["A"], 50), acquisition_times(budget["B"], 100)
        )

    slow, fast = run_virtual(main)
    assert slow[-1] == pytest.approx(4.9, rel=0.01)
    assert fast[-1] == pytest.approx(4.95, rel=0.01)
