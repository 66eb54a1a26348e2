"""Quota pacing measured on an event loop with virtual time: no sleeps, no wall clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from fleetaudit.api.pacing import DECREASE, GROWTH, HEADROOM, ActionBudget, Pace, RateBudget
from fleetaudit.api.schedule import HORIZON_S, LocalSchedule, book
from fleetaudit.api.stats import ActionStats
from fleetaudit.emulator.quota import QuotaBook, Throttled

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
    times = run_virtual(lambda: acquisition_times(ActionBudget("A", 10.0), 100))
    assert times[-1] - times[0] == pytest.approx(9.9, rel=0.01)


def test_no_window_exceeds_the_quota() -> None:
    """No one-second window holds more than 10 starts, no 100 ms window more than one."""
    times = run_virtual(lambda: acquisition_times(ActionBudget("A", 10.0), 100))
    assert most_in_window(times, 1.0) <= 10
    assert most_in_window(times, 0.1) <= 1


def test_no_burst_after_idle() -> None:
    """After a long idle spell the budget still lets one call go at a time, not a burst."""

    async def main() -> list[float]:
        budget = ActionBudget("A", 10.0)
        await acquisition_times(budget, 5)
        await asyncio.sleep(30.0)
        return await acquisition_times(budget, 20)

    assert most_in_window(run_virtual(main), 0.1) <= 1


def test_throttling_slows_the_action() -> None:
    """A throttling answer lowers the rate multiplicatively."""

    async def main() -> float:
        budget = ActionBudget("A", 10.0)
        budget.throttled(None)
        return budget.rate

    assert run_virtual(main) < 9.0


def test_throttling_pauses_for_the_hint() -> None:
    """After a hint of 2 s the action starts nothing for 2 virtual seconds."""

    async def main() -> float:
        budget = ActionBudget("A", 10.0)
        loop = asyncio.get_running_loop()
        budget.throttled(2.0)
        await budget.acquire()
        return loop.time()

    assert run_virtual(main) >= 2.0


def test_simultaneous_throttles_count_once() -> None:
    """Many calls throttled at the same moment lower the rate once, not once each."""
    pace = Pace(10.0)
    for _ in range(20):
        pace.throttled(5.0, None, sent_at=4.9)
    pace.throttled(5.1, None, sent_at=4.95)  # sent before the decrease: the same episode
    assert pace.rate(5.0) == pytest.approx(10.0 * HEADROOM * DECREASE)
    assert pace.epoch == 1


def test_rate_regrows_to_the_quota_on_its_own() -> None:
    """Once throttling stops, the rate climbs back to the quota within seconds, never above."""
    pace = Pace(10.0)
    pace.throttled(0.0, None, sent_at=0.0)
    rates = [pace.rate(t / 10) for t in range(0, 101)]
    assert rates[0] == pytest.approx(10.0 * HEADROOM * DECREASE)
    assert max(rates) <= 10.0 * HEADROOM
    assert rates[60] >= 0.9 * 10.0  # 6 s after the throttle
    assert rates == sorted(rates)


def test_rate_stays_flat_near_the_throttled_rate() -> None:
    """Near the rate that was throttled the rate barely moves: probing costs few throttles."""
    pace = Pace(10.0)
    pace.throttled(0.0, None, sent_at=0.0)
    k = (10.0 * HEADROOM * (1 - DECREASE) / (GROWTH * 10.0 * HEADROOM)) ** (1 / 3)
    assert abs(pace.rate(k) - 10.0 * HEADROOM) < 1e-6
    assert pace.rate(k + 1.0) - pace.rate(k - 1.0) < 0.05 * 10.0


def test_a_second_throttle_below_the_peak_aims_lower() -> None:
    """Throttled again below the last peak, the next peak is lower still (fast convergence)."""
    pace = Pace(10.0)
    pace.throttled(0.0, None, sent_at=0.0)
    throttled_at = pace.rate(1.5)
    assert throttled_at < pace.quota
    pace.throttled(1.5, None, sent_at=1.4)
    assert pace.rate(1.5) == pytest.approx(throttled_at * DECREASE)
    peak = throttled_at * (1 + DECREASE) / 2
    k = ((peak - throttled_at * DECREASE) / (GROWTH * pace.quota)) ** (1 / 3)
    assert pace.rate(1.5 + k) == pytest.approx(peak, rel=1e-6)


def test_the_next_peak_is_the_rate_answered_over_the_episode() -> None:
    """After a long episode the curve plateaus at the rate that was really answered."""
    pace = Pace(10.0)
    pace.throttled(0.0, None, sent_at=0.0)
    for _ in range(24):  # 6/s answered over a 4 s episode
        pace.answered()
    current = pace.rate(4.0)
    assert current > 6.0
    pace.throttled(4.0, None, sent_at=3.9)
    k = ((6.0 - current * DECREASE) / (GROWTH * pace.quota)) ** (1 / 3)
    assert pace.rate(4.0 + k) == pytest.approx(6.0, rel=1e-6)


def test_slots_booked_before_a_throttle_are_booked_again() -> None:
    """A throttle re-spaces the slot already booked: it waits the pause, then the new pace."""

    async def main() -> list[float]:
        budget = ActionBudget("A", 10.0, share=1)
        loop = asyncio.get_running_loop()
        await budget.acquire()  # t = 0; the next slot is booked for t = 0.1 when asked
        times: list[float] = []

        async def caller() -> None:
            await budget.acquire()
            times.append(loop.time())

        task = asyncio.ensure_future(caller())
        await asyncio.sleep(0.05)
        budget.throttled(1.0)  # while the caller sleeps towards its 0.1 s slot
        await task
        return times

    (started,) = run_virtual(main)
    assert started >= 1.05  # not at the 0.1 s slot booked at the old pace


def test_a_process_holds_at_most_share_slots_ahead() -> None:
    """With share 2, a third waiter books nothing until one of the first two starts."""

    async def main() -> list[float]:
        schedule = LocalSchedule()
        budget = ActionBudget("A", 10.0, schedule=schedule, share=2)
        return await acquisition_times(budget, 5)

    times = run_virtual(main)
    assert times == pytest.approx([0.0, 0.1005, 0.201, 0.3015, 0.402], abs=1e-3)


def test_two_budgets_on_one_schedule_stay_under_the_quota_together() -> None:
    """Two processes' budgets booking on one schedule share the quota: no window over it."""

    async def main() -> tuple[list[float], list[float]]:
        schedule = LocalSchedule()
        first = ActionBudget("A", 10.0, schedule=schedule)
        second = ActionBudget("A", 10.0, schedule=schedule)
        return await asyncio.gather(acquisition_times(first, 50), acquisition_times(second, 50))

    first, second = run_virtual(main)
    together = sorted(first + second)
    assert most_in_window(together, 1.0) <= 10
    assert together[-1] == pytest.approx(9.9, rel=0.01)
    # Turns alternate: each got half while both were busy.
    assert abs(first[-1] - second[-1]) <= 0.25


def test_a_larger_share_takes_more_turns() -> None:
    """A budget with share 4 beside one with share 1 gets about 4/5 of the slots."""

    async def main() -> tuple[list[float], list[float]]:
        schedule = LocalSchedule()
        gate = ActionBudget("A", 10.0, schedule=schedule, share=4)
        nightly = ActionBudget("A", 10.0, schedule=schedule, share=1)
        return await asyncio.gather(acquisition_times(gate, 80), acquisition_times(nightly, 80))

    gate, nightly = run_virtual(main)
    gate_done = gate[-1]
    nightly_meanwhile = sum(1 for t in nightly if t <= gate_done)
    assert 80 / (80 + nightly_meanwhile) == pytest.approx(0.8, abs=0.05)


def test_waits_on_others_are_counted_as_quota_wait() -> None:
    """Time a slot waited behind another process's bookings is recorded; the own pace's is not."""

    async def main() -> tuple[ActionStats, ActionStats]:
        schedule = LocalSchedule()
        alone_stats, shared_stats = ActionStats(quota=9.95), ActionStats(quota=9.95)
        alone = ActionBudget("A", 10.0)
        shared = ActionBudget("A", 10.0, schedule=schedule)
        other = ActionBudget("A", 10.0, schedule=schedule)

        async def drive(budget: ActionBudget, stats: ActionStats | None, n: int) -> None:
            for _ in range(n):
                await budget.acquire(stats)

        await asyncio.gather(
            drive(alone, alone_stats, 20), drive(shared, shared_stats, 20), drive(other, None, 20)
        )
        return alone_stats, shared_stats

    alone, shared = run_virtual(main)
    assert alone.quota_wait_s == pytest.approx(0.0, abs=1e-6)
    assert alone.quota_share() == pytest.approx(1.0, abs=0.01)
    # Its first slot came before the other's; each of the other 19 waited one slot more.
    assert shared.quota_wait_s == pytest.approx(18 * 0.1005, rel=0.05)
    assert shared.quota_share() == pytest.approx(0.5, abs=0.03)


# --- the pace against the emulator's token bucket, simulated on a virtual clock -----------


def _simulate(
    calls: int, *, tenant_rate: float, tenant_for: float, horizon: float
) -> tuple[list[float], int]:
    """One action at quota 10/s paced by `Pace` beside a tenant of the same account.

    The platform is the emulator's own QuotaBook; calls take 100 ms; a throttled call is
    sent again. Returns the start times of every attempt and how many were throttled.
    """
    clock = [0.0]
    quotas = QuotaBook({"A": 10.0}, lambda: clock[0])
    pace = Pace(10.0)
    events: list[tuple[float, int, str, object]] = []
    counter = itertools.count()

    def at(t: float, kind: str, data: object = None) -> None:
        heapq.heappush(events, (t, next(counter), kind, data))

    for i in range(int(tenant_for * tenant_rate)):
        at(i / tenant_rate + 0.013, "tenant")
    next_free = 0.0

    def book_slot(now: float) -> None:
        nonlocal next_free
        now += pace.pause_left(now)
        start, next_free = book(next_free, now, 1.0 / pace.rate(now))
        at(start, "start", pace.epoch)

    book_slot(0.0)
    starts: list[float] = []
    throttled = 0
    while events:
        t, _, kind, data = heapq.heappop(events)
        clock[0] = t
        if t > horizon:
            break
        if kind == "tenant":
            quotas.take("key", "A")
        elif kind == "start":
            if data != pace.epoch:
                book_slot(t)
            elif len(starts) < calls:
                starts.append(t)
                at(t + 0.05, "arrive", t)
                book_slot(t)
        elif kind == "arrive":
            at(t + 0.05, "answer", (data, quotas.take("key", "A")))
        elif kind == "answer":
            assert isinstance(data, tuple)
            sent_at, answer = data
            if isinstance(answer, Throttled):
                throttled += 1
                calls += 1
                pace.throttled(t, answer.time_left_ms / 1000, sent_at)
            else:
                pace.answered()
    return starts, throttled


def test_simulated_tenant_at_half_the_quota_leaves_us_the_rest() -> None:
    """Beside a tenant at 5/s for 20 s, 200 calls take about the ideal 30 s."""
    starts, throttled = _simulate(200, tenant_rate=5.0, tenant_for=20.0, horizon=60.0)
    assert starts[-1] <= 30.0 / 0.9  # at least 90% of the ideal share
    assert throttled / len(starts) < 0.03


@pytest.mark.parametrize("tenant_for", [20.0, 20.7, 21.4, 22.1, 22.8])
def test_simulated_recovery_after_the_tenant_stops(tenant_for: float) -> None:
    """Within 5 s of the tenant stopping, a one-second window holds at least 9 of our starts."""
    starts, _ = _simulate(10**6, tenant_rate=5.0, tenant_for=tenant_for, horizon=tenant_for + 10)
    recovered = next(
        t for t in starts if t >= tenant_for and sum(t <= u < t + 1 for u in starts) >= 9
    )
    assert recovered - tenant_for <= 5.0


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


def test_book_starts_now_past_a_next_slot_beyond_the_horizon() -> None:
    """A next free moment further ahead than the horizon is stale; one within it is kept."""
    assert book(100.0 + HORIZON_S + 1, 100.0, 0.1) == (100.0, 100.1)
    assert book(105.0, 100.0, 0.1) == (105.0, 105.1)
    assert book(90.0, 100.0, 0.1) == (100.0, 100.1)
