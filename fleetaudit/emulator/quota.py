"""The platform's per-account, per-action QPS quotas: token buckets on an injected clock.

Pure: the clock is a parameter, so tests move a fake clock instead of sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleetaudit.emulator.facts import DEFAULT_QUOTAS, DEFAULT_RATE


@dataclass(frozen=True, slots=True)
class Throttled:
    """Why a call was refused: its limit, and when the next token arrives."""

    limit: float
    time_left_ms: int
    reset_epoch_ms: int

    def header(self) -> str:
        """The `x-ratelimit-user-api` header value the gateway sends with `Throttling.User`."""
        return (
            f"Limit:{self.limit:g},Remain:0,TimeLeft:{self.time_left_ms},"
            f"Reset:{self.reset_epoch_ms}"
        )


class QuotaBook:
    """One token bucket per (account, action); capacity is one second's worth of calls.

    The quota is the account's: every key id (RAM user) that `accounts` maps to one account
    draws from its buckets; a key id it does not name is an account of its own.
    """

    __slots__ = ("_accounts", "_buckets", "_clock", "_rates")

    def __init__(
        self,
        rates: Mapping[str, float] | None,
        clock: Callable[[], float] = lambda: 0.0,
        accounts: Mapping[str, str] | None = None,
    ) -> None:
        self._accounts = dict(accounts or {})
        self._rates = dict(DEFAULT_QUOTAS)
        if rates is not None:
            self._rates.update(rates)
        self._clock = clock
        # (account, action) -> [tokens, time of last refill]
        self._buckets: dict[tuple[str, str], list[float]] = {}

    def rate(self, action: str) -> float:
        """Calls per second allowed for `action`; inf when unlimited."""
        rate = self._rates.get(action, DEFAULT_RATE)
        return math.inf if rate <= 0 else rate

    def take(self, key_id: str, action: str) -> Throttled | None:
        """Spend one call of `action` for `key_id`: None if allowed, else why not."""
        rate = self.rate(action)
        if math.isinf(rate):
            return None
        capacity = max(rate, 1.0)
        now = self._clock()
        account = self._accounts.get(key_id, key_id)
        bucket = self._buckets.get((account, action))
        if bucket is None:
            bucket = self._buckets[(account, action)] = [capacity, now]
        # A clock that steps backwards refills nothing rather than draining the bucket.
        tokens = min(capacity, bucket[0] + max(0.0, now - bucket[1]) * rate)
        bucket[1] = now
        # The epsilon absorbs float error in clock deltas (100.1 - 100.0 < 0.1).
        if tokens >= 1.0 - 1e-9:
            bucket[0] = max(0.0, tokens - 1.0)
            return None
        bucket[0] = tokens
        wait = (1.0 - tokens) / rate
        time_left_ms = max(1, math.ceil(wait * 1000))
        return Throttled(rate, time_left_ms, int(now * 1000) + time_left_ms)
