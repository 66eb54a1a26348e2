"""Retry settings and backoff delays: exponential with full jitter, in plain units.

Pure: the random source is a parameter, so tests pin every delay. The client decides
*whether* to retry (protocol.classify_error); this module decides *how long* to wait.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries: attempts (throttling aside), waits in seconds, a deadline."""

    attempts: int = 8
    wait_initial: float = 0.2
    wait_max: float = 10.0
    timeout: float = 120.0  # total seconds for one call, retries and throttled waits included
    max_server_wait: float = 60.0  # the longest any server hint may make us wait

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.wait_initial, self.wait_max, self.max_server_wait) < 0 or self.timeout <= 0:
            raise ValueError("waits must not be negative and the timeout must be positive")


def backoff_cap(policy: RetryPolicy, retry_number: int) -> float:
    """The longest wait before retry `retry_number` (1 = the first retry)."""
    # Cap the exponent so a huge retry number cannot overflow a float.
    exponent = min(max(retry_number - 1, 0), 64)
    return min(policy.wait_max, policy.wait_initial * 2.0**exponent)


def backoff_delay(
    policy: RetryPolicy,
    retry_number: int,
    rng: random.Random,
    server_hint: float | None = None,
) -> float:
    """Seconds to wait before retry `retry_number`: full jitter, never over `wait_max`.

    Full jitter (uniform between 0 and the cap) spreads clients that failed together. A
    server's retry-after hint is a floor, honoured up to `wait_max`.
    """
    delay = rng.uniform(0.0, backoff_cap(policy, retry_number))
    if server_hint is not None and server_hint > delay:
        delay = min(server_hint, policy.wait_max)
    return max(0.0, min(delay, policy.wait_max))
