"""Sampled gates: a uniform random sample of the gate's scope and the drift share's interval.

A pre-rollout gate on a 100k-device product need not ask every device for its versions:
the share of drifting devices is estimated from a uniform sample, with a 95% Wilson score
interval (it stays inside 0..100% and keeps its coverage at small shares, where the
normal approximation does not). Pure: the sample is chosen by a seeded hash of each
device, so it is uniform, reproducible for a run, and drawn while streaming the device
list with memory for the sample alone.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

Z_95 = 1.959963984540054  # the standard normal quantile for a two-sided 95% interval


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimated share with its 95% confidence interval (0..1 each)."""

    share: float
    low: float
    high: float

    def __str__(self) -> str:
        """Like `3.1% (2.4-3.9%)`."""
        return f"{_percent(self.share)}% ({_percent(self.low)}-{_percent(self.high)}%)"


def wilson(successes: int, trials: int, population: int | None = None, z: float = Z_95) -> Interval:
    """The Wilson score interval of `successes` in `trials` drawn from `population`.

    Drawn without replacement from a finite population, the interval narrows by the finite
    population correction sqrt((N - n) / (N - 1)); a sample of the whole population is the
    exact share. No trial is no evidence: 0% (0.0-100.0%).
    """
    if not 0 <= successes <= max(trials, 0):
        raise ValueError(f"{successes} successes in {trials} trials")
    if trials <= 0:
        return Interval(0.0, 0.0, 1.0)
    p = successes / trials
    if population is not None and trials >= population:
        return Interval(p, p, p)
    correction = 1.0 if population is None else math.sqrt((population - trials) / (population - 1))
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    half *= correction
    # The bounds hold the estimate itself (float error at 0 or `trials` successes must not
    # put p outside its own interval).
    return Interval(p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def sample_size(spec: str | int, population: int) -> int:
    """The devices a `sample` setting asks for: a count, or a percentage of the population."""
    if isinstance(spec, int):
        return min(spec, population)
    text = spec.strip()
    if text.endswith("%"):
        return min(population, math.ceil(population * float(text[:-1]) / 100))
    return min(int(text), population)


def sample_key(seed: int, product_key: str, device_name: str) -> int:
    """A device's draw: the sample is the `size` devices with the smallest draws."""
    digest = hashlib.blake2b(
        f"{product_key}/{device_name}".encode(), digest_size=8, key=seed.to_bytes(8, "big")
    ).digest()
    return int.from_bytes(digest, "big")


def choose_sample(devices: Iterable[tuple[str, str]], size: int, seed: int) -> set[tuple[str, str]]:
    """A uniform random sample of `size` (product_key, device_name) pairs, by seeded draws."""
    if size <= 0:
        return set()
    drawn = heapq.nsmallest(size, devices, key=lambda d: sample_key(seed, d[0], d[1]))
    return set(drawn)


@dataclass(frozen=True)
class GateSample:
    """The devices a sampled gate audits for versions, out of how many in its scope."""

    spec: str  # the `sample` setting: a count or a percentage
    seed: int
    population: int
    devices: frozenset[tuple[str, str]]

    def record(self) -> dict[str, object]:
        """The manifest's `sample` (the devices themselves are in devices.parquet)."""
        return {
            "sample": self.spec,
            "size": len(self.devices),
            "population": self.population,
            "seed": self.seed,
        }


def draw_gate_sample(
    spec: str, seed: int, scope: Callable[[], Iterable[tuple[str, str]]]
) -> GateSample:
    """The sample of a scope: `scope()` streams it again for each pass (memory: the sample).

    A count is drawn in one pass, counting on the way; a percentage needs the population
    first, so the scope is counted, then drawn.
    """
    population = 0

    def counted() -> Iterator[tuple[str, str]]:
        nonlocal population
        for device in scope():
            population += 1
            yield device

    if spec.endswith("%"):
        total = sum(1 for _ in scope())
        chosen = choose_sample(scope(), sample_size(spec, total), seed)
        return GateSample(spec, seed, total, frozenset(chosen))
    chosen = choose_sample(counted(), int(spec), seed)
    return GateSample(spec, seed, population, frozenset(chosen))


def _percent(share: float) -> str:
    return f"{100 * share:.1f}"
