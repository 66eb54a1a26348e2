"""Backoff delays: full jitter under an exponential cap that never exceeds wait_max."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetaudit.api.retry import RetryPolicy, backoff_cap, backoff_delay


@given(
    wait_initial=st.floats(0.0, 100.0),
    wait_max=st.floats(0.0, 100.0),
    retry_number=st.integers(1, 10_000),
    seed=st.integers(0, 2**32),
    hint=st.none() | st.floats(0.0, 1e6),
)
def test_delay_never_exceeds_wait_max(
    wait_initial: float, wait_max: float, retry_number: int, seed: int, hint: float | None
) -> None:
    """Whatever the retry number, jitter or server hint, a delay stays in [0, wait_max]."""
    policy = RetryPolicy(wait_initial=wait_initial, wait_max=wait_max)
    delay = backoff_delay(policy, retry_number, random.Random(seed), hint)
    assert 0.0 <= delay <= wait_max


def test_cap_doubles_until_wait_max() -> None:
    """The cap starts at wait_initial and doubles per retry up to wait_max."""
    policy = RetryPolicy(wait_initial=0.2, wait_max=1.0)
    assert [backoff_cap(policy, n) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.0]


def test_server_hint_is_a_floor() -> None:
    """A retry-after hint longer than the jitter is waited in full."""
    policy = RetryPolicy(wait_initial=0.01, wait_max=10.0)
    assert backoff_delay(policy, 1, random.Random(1), 0.5) == 0.5


def test_jitter_is_seeded() -> None:
    """The same seed gives the same delays."""
    policy = RetryPolicy()
    first = [backoff_delay(policy, n, random.Random(7)) for n in range(1, 6)]
    again = [backoff_delay(policy, n, random.Random(7)) for n in range(1, 6)]
    assert first == again


def test_policy_rejects_zero_attempts() -> None:
    """A policy needs at least one attempt."""
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
