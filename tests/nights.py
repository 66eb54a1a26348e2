"""Two nights of one series, audited for real against the emulator on loopback.

`two_nights(tmp)` runs the same device list (rewritten in between) through `run_audit`
twice, a day apart by the fake clock, against two fleets that differ in known ways:

- `d1`'s default module moves 1.0.0 -> 1.1.0: its drift is resolved, its version moved;
- `HOSTILE` (a device named like markup) drifts both nights: its drift persists and keeps
  the first night's first sighting;
- `d2` gets a task whose source version is wrong (a new critical `task_src_mismatch`) and
  one queued for three days (a new `stalled_task`);
- `d3` leaves the list, `d4` joins it.

The second night's gate has `max_new_critical = 0`, so it fails on exactly that finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio

from fleetaudit.config import GateRules, Settings
from fleetaudit.emulator.fleet import StaticFleet
from fleetaudit.models import Credentials
from fleetaudit.pipeline import RunOutcome, run_audit
from fleetaudit.policy import Policy, Target

from helpers import FIXED_NOW, UNLIMITED, FakeClock, FleetBuilder, emulator_url, write_device_list

KEY_ID = "nights-key"
SECRET = "nights-Secret-41c0"
HOSTILE = "<script>window.pwned=1</script>"
DAY_S = 86_400
POLICY = Policy(targets=(Target("pk1", "default", version="1.1.0"),))
GATE = GateRules(max_new_critical=0)


@dataclass(frozen=True)
class Nights:
    """OUT and the two runs' outcomes."""

    out: Path
    first: RunOutcome
    second: RunOutcome


def first_fleet() -> StaticFleet:
    fleet = FleetBuilder(now_ms=int(FIXED_NOW * 1000))
    fleet.device("d1", {"default": "1.0.0"}).device(HOSTILE, {"default": "1.0.0"})
    fleet.device("d2", {"default": "1.1.0"}).device("d3", {"default": "1.1.0"})
    return fleet.build()


def second_fleet() -> StaticFleet:
    now_ms = int((FIXED_NOW + DAY_S) * 1000)
    fleet = FleetBuilder(now_ms=now_ms)
    fleet.device("d1", {"default": "1.1.0"}).device(HOSTILE, {"default": "1.0.0"})
    fleet.device("d2", {"default": "1.1.0"}).device("d4", {"default": "1.1.0"})
    fleet.task("T9", "d2", src="0.5.0", dest="1.2.0").firmware("F1", dest="1.2.0").job("J1")
    # Queued for three days (the limit is a day): a new stalled task.
    fleet.task("T8", "d2", module="wifi", modified_ms=now_ms - 3 * DAY_S * 1000)
    return fleet.build()


def audit(tmp: Path, fleet: StaticFleet, now_s: float, **settings: object) -> RunOutcome:
    """One run of the series in `tmp / "out"` over `fleet`, started at `now_s`."""
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, _):
        run = Settings(
            endpoint=url,
            devices=write_device_list(tmp / "devices.csv", fleet),
            out=tmp / "out",
            qps=1000.0,
            concurrency=4,
            now=int(now_s * 1000),
            **settings,  # type: ignore[arg-type]
        )
        return anyio.run(
            partial(run_audit, run, POLICY, Credentials(KEY_ID, SECRET), clock=FakeClock(now_s))
        )


def two_nights(tmp: Path) -> Nights:
    """The two runs described in the module docstring."""
    first = audit(tmp, first_fleet(), FIXED_NOW)
    second = audit(tmp, second_fleet(), FIXED_NOW + DAY_S, gate=GATE)
    return Nights(tmp / "out", first, second)
