"""What a run reads before its fan-out: the policy's firmware targets, and the sweep.

Both prime the run's lookups, so the per-device workers find the firmware and jobs they
need without asking again, and both hand their rows to the recorder to be written once.
`tasks_record` is the manifest's account of how the run read its tasks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio

from fleetaudit.api.client import OtaClient
from fleetaudit.audit.findings import expected_versions
from fleetaudit.collect import Fetched, Lookups
from fleetaudit.config import Settings
from fleetaudit.devices import product_counts
from fleetaudit.errors import RunIncomplete, UsageError
from fleetaudit.models import CallFailure, Firmware
from fleetaudit.policy import Policy
from fleetaudit.report.recorder import Recorder
from fleetaudit.report.resume import value_counts
from fleetaudit.report.staging import RunStaging
from fleetaudit.sweep import Sweep, sweep_tasks
from fleetaudit.terms import Table

log = logging.getLogger(__name__)


async def resolve_targets(
    policy: Policy, lookups: Lookups, recorder: Recorder
) -> dict[tuple[str, str], str]:
    """The versions the policy expects; the firmware its targets name is read (and kept)."""
    firmware: dict[str, Firmware] = {}
    fetched = Fetched()
    for target in policy.targets:
        if target.firmware_id is None:
            continue
        found = await lookups.firmware(target.firmware_id, fetched)
        if not isinstance(found, Firmware):
            failure: CallFailure | None = found
            why = f"{failure.error_code}: {failure.error_message}" if failure else "not found"
            problem = (
                f"policy target {target.product_key}/{target.module} names firmware "
                f"{target.firmware_id}, which could not be read ({why})"
            )
            if failure is not None and failure.attempts > 1:
                # Retried and still failing: the platform is in trouble, not the policy.
                raise RunIncomplete(problem + "; try again later")
            raise UsageError(problem)
        firmware[target.firmware_id] = found
    recorder.add(Table.FIRMWARE, fetched.firmware)
    return expected_versions(policy, firmware)


async def sweep_before_fan_out(
    client: OtaClient, devices: Path, lookups: Lookups, recorder: Recorder
) -> Sweep:
    """The sweep over the device list's products; its firmware and jobs serve as lookups."""
    products = await anyio.to_thread.run_sync(product_counts, devices)
    sweep = await sweep_tasks(client, products)
    fetched = lookups.prime_listed(sweep.firmware, sweep.jobs)
    recorder.add(Table.FIRMWARE, fetched.firmware)
    recorder.add(Table.JOBS, fetched.jobs)
    recorder.add(Table.ERRORS, sweep.failures)
    if sweep.covered != sweep.products:
        log.warning(
            "the sweep could not read every listing of %d of %d products (%d failed, %d past "
            "the 100,000-row window): their devices are asked per device",
            len(sweep.products - sweep.covered),
            len(sweep.products),
            len(sweep.failures),
            len(sweep.past_window),
        )
    return sweep


def tasks_record(staging: RunStaging, settings: Settings, sweep: Sweep | None) -> dict[str, Any]:
    """How the run read unfinished tasks: devices covered each way, and the sweep's account."""
    by_source = value_counts(staging, Table.DEVICES, "tasks_source")
    covered = dict(sorted((("not_read" if k == "None" else k), v) for k, v in by_source.items()))
    return {
        "tasks_from": settings.tasks_from,
        "audit": list(settings.audit),
        "devices_by_source": covered,
        "disagreements": sum(value_counts(staging, Table.TASK_DISAGREEMENTS, "kind").values()),
        "sweep": sweep.record() if sweep is not None else None,
    }
