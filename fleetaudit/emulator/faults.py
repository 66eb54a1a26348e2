"""Which faults the emulator injects, and the seeded draw that picks one per request.

Pure: the plan is a value, the RNG is passed in, so a run with the same seed and the same
request order injects the same faults.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["error", "drop", "garbage", "truncated", "system_error"]

GARBAGE_BODY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class FaultPlan:
    """Rates (0..1) of each fault kind, latency, and devices that always fail.

    - `error_rate`: a gateway error with a status from `error_statuses` (500 ->
      `InternalError`, anything else -> `ServiceUnavailable`);
    - `drop_rate`: the connection closes without a response;
    - `garbage_rate`: HTTP 502 with an HTML proxy page instead of JSON;
    - `truncated_rate`: HTTP 200 with the real JSON body cut in half;
    - `system_error_rate`: HTTP 200, `Success: false`, `iot.system.SystemException`;
    - `latency`: seconds added to every response, fixed or uniform in (min, max);
    - `failing_devices`: device name -> business error code returned for it, always;
    - `failing_listings`: firmware or job id -> business error code that the sweep's
      listings (ListOTAJobByFirmware, ListOTATaskByJob) return for it, always;
    - `job_listing_skew`: task id -> the status ListOTATaskByJob shows instead of the
      real one (None: it leaves the task out): a planted disagreement between the listings.
    """

    seed: int = 0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503)
    drop_rate: float = 0.0
    garbage_rate: float = 0.0
    truncated_rate: float = 0.0
    system_error_rate: float = 0.0
    latency: float | tuple[float, float] = 0.0
    failing_devices: Mapping[str, str] = field(default_factory=dict)
    failing_listings: Mapping[str, str] = field(default_factory=dict)
    job_listing_skew: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rates = (
            self.error_rate,
            self.drop_rate,
            self.garbage_rate,
            self.truncated_rate,
            self.system_error_rate,
        )
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0:
            raise ValueError("fault rates must each be in 0..1 and sum to at most 1")
        if not self.error_statuses:
            raise ValueError("error_statuses must name at least one HTTP status")

    @property
    def any_random(self) -> bool:
        """Whether any random fault can happen (so the draw can be skipped when not)."""
        return (
            self.error_rate
            + self.drop_rate
            + self.garbage_rate
            + self.truncated_rate
            + self.system_error_rate
        ) > 0.0


def pick_fault(plan: FaultPlan, rng: random.Random) -> FaultKind | None:
    """One uniform draw decides the request's fault, if any."""
    if not plan.any_random:
        return None
    u = rng.random()
    kinds: tuple[tuple[FaultKind, float], ...] = (
        ("error", plan.error_rate),
        ("drop", plan.drop_rate),
        ("garbage", plan.garbage_rate),
        ("truncated", plan.truncated_rate),
        ("system_error", plan.system_error_rate),
    )
    for kind, rate in kinds:
        if u < rate:
            return kind
        u -= rate
    return None


def pick_error_status(plan: FaultPlan, rng: random.Random) -> tuple[int, str]:
    """The HTTP status and gateway code of an injected error."""
    status = rng.choice(plan.error_statuses)
    return status, "InternalError" if status == 500 else "ServiceUnavailable"


def pick_latency(plan: FaultPlan, rng: random.Random) -> float:
    """Seconds to delay this response."""
    if isinstance(plan.latency, tuple):
        low, high = plan.latency
        return rng.uniform(low, high)
    return plan.latency
