"""`fleetaudit plan`: what each way of reading tasks would cost, before a run calls anything.

From the device list (devices per product) and the cheap discovery listings (each product's
firmware, each firmware's jobs: a page per 100 firmware and per 200 jobs), `estimate` (pure)
counts the calls per action of a full and a tasks-only audit, per device and by the sweep,
and the time each takes under the quotas. Nothing else is called and nothing is written.

What is not known before the run is said, not guessed: module pages (one per device is the
floor: a device with more than 200 modules takes more), the unfinished tasks (the sweep's
task listings are 4 per job plus one per 100 tasks beyond), and the per-device lookups
(at most one QueryOTAFirmware per firmware and one ListOTAJobByDevice per job a task names).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

import anyio

from fleetaudit.api.client import OtaClient, open_client
from fleetaudit.config import Settings
from fleetaudit.devices import product_counts
from fleetaudit.durations import format_duration
from fleetaudit.errors import CallFailed, RunIncomplete
from fleetaudit.models import Credentials, Firmware, Job
from fleetaudit.terms import UNFINISHED_STATUSES, Action, TasksFrom

_STRATEGIES: tuple[tuple[str, TasksFrom, bool], ...] = (
    ("devices, full", TasksFrom.DEVICES, True),
    ("devices, tasks only", TasksFrom.DEVICES, False),
    ("jobs, full", TasksFrom.JOBS, True),
    ("jobs, tasks only", TasksFrom.JOBS, False),
)
# The per-device calls that set a run's pace; lookups are at most one per firmware and job.
_PER_DEVICE_TIMED = frozenset({Action.LIST_MODULE_VERSIONS, Action.LIST_UNFINISHED_TASKS})


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the cheap listings found: devices per product, firmware, jobs, pages read."""

    devices: Mapping[str, int]
    firmware: int
    jobs: int
    firmware_pages: int
    job_pages: int


@dataclass(frozen=True, slots=True)
class Estimate:
    """One strategy's calls per action (floors where the run learns more) and its time."""

    name: str
    calls: Mapping[str, int]
    seconds: float


def estimate(discovery: Discovery, quotas: Mapping[str, float]) -> list[Estimate]:
    """The calls and time of each strategy; the sweep runs first, then the per-device calls.

    Each action has its own quota, so a phase takes as long as its slowest action; the
    lookups behind tasks are left out of the time (at most one per firmware and job).
    """
    devices = sum(discovery.devices.values())
    estimates = []
    for name, tasks_from, modules in _STRATEGIES:
        per_device: dict[str, int] = {}
        sweep: dict[str, int] = {}
        if modules:
            per_device[Action.LIST_MODULE_VERSIONS] = devices
        if tasks_from == TasksFrom.DEVICES:
            per_device[Action.LIST_UNFINISHED_TASKS] = devices
            per_device[Action.QUERY_FIRMWARE] = discovery.firmware
            per_device[Action.LIST_JOBS] = discovery.jobs
        else:
            sweep[Action.LIST_FIRMWARE] = discovery.firmware_pages
            sweep[Action.LIST_JOBS_BY_FIRMWARE] = discovery.job_pages
            sweep[Action.LIST_TASKS_BY_JOB] = len(UNFINISHED_STATUSES) * discovery.jobs
        timed = {k: v for k, v in per_device.items() if k in _PER_DEVICE_TIMED}
        # The sweep's three listings follow one another (firmware, then jobs, then tasks).
        seconds = sum(calls / quotas[action] for action, calls in sweep.items())
        seconds += max((calls / quotas[action] for action, calls in timed.items()), default=0.0)
        estimates.append(Estimate(name, {**sweep, **per_device}, seconds))
    return estimates


def render(discovery: Discovery, estimates: list[Estimate]) -> str:
    """The plan as a table: calls per action and strategy, then the time under the quotas."""
    devices = sum(discovery.devices.values())
    lines = [
        f"{devices} devices in {len(discovery.devices)} products; {discovery.firmware} firmware "
        f"and {discovery.jobs} jobs (read in {discovery.firmware_pages} + "
        f"{discovery.job_pages} listing pages)",
        "",
        f"{'calls':<32}" + "".join(f"{e.name:>22}" for e in estimates),
    ]
    actions = [a for a in Action if any(a.value in e.calls for e in estimates)]
    for action in actions:
        cells = []
        for e in estimates:
            calls = e.calls.get(action.value)
            floor = action in (Action.LIST_MODULE_VERSIONS, Action.LIST_TASKS_BY_JOB)
            ceiling = action in (Action.QUERY_FIRMWARE, Action.LIST_JOBS)
            shown = "-" if calls is None else f"{'>=' if floor else '<=' if ceiling else ''}{calls}"
            cells.append(f"{shown:>22}")
        lines.append(f"{action.value:<32}" + "".join(cells))
    total = [f"{'>=' + str(sum(e.calls.values())):>22}" for e in estimates]
    lines.append(f"{'all calls':<32}" + "".join(total))
    times = [f"{'>=' + format_duration(math.ceil(e.seconds)):>22}" for e in estimates]
    lines += [f"{'time under the quotas':<32}" + "".join(times), ""]
    lines.append(
        "ListOTATaskByJob: 4 per job, plus 1 per 100 unfinished tasks beyond the first 100 of "
        "a (job, status); module pages: more for devices with over 200 modules."
    )
    return "\n".join(lines)


async def discover(client: OtaClient, devices: Mapping[str, int]) -> Discovery:
    """The listed products' firmware and jobs (ListOTAFirmware, ListOTAJobByFirmware only)."""
    firmware: list[Firmware] = []
    jobs: list[Job] = []

    failures: list[CallFailed] = []

    async def product(product_key: str) -> None:
        try:
            listed = await client.list_firmware(product_key)
        except CallFailed as failed:
            failures.append(failed)
            return
        firmware.extend(listed)
        async with anyio.create_task_group() as group:
            for package in listed:
                group.start_soon(firmware_jobs, package)

    async def firmware_jobs(package: Firmware) -> None:
        try:
            jobs.extend(await client.list_jobs_by_firmware(package))
        except CallFailed as failed:
            failures.append(failed)

    async with anyio.create_task_group() as group:
        for product_key in sorted(devices):
            group.start_soon(product, product_key)
    if failures:
        row = failures[0].failure
        raise RunIncomplete(
            f"plan: {row.action} failed ({row.error_code}: {row.error_message}); try again later"
        )
    return Discovery(
        devices=devices,
        firmware=len(firmware),
        jobs=len(jobs),
        firmware_pages=client.stats.action(Action.LIST_FIRMWARE).calls,
        job_pages=client.stats.action(Action.LIST_JOBS_BY_FIRMWARE).calls,
    )


async def plan_run(settings: Settings, credentials: Credentials, out: TextIO) -> int:
    """Print the plan of a run with these settings; the exit code (0)."""
    from fleetaudit.pipeline import client_settings  # the run's own client settings

    assert settings.devices is not None  # settings_from() refuses a run without one
    client = client_settings(settings)
    devices = await anyio.to_thread.run_sync(product_counts, settings.devices)
    async with open_client(client, credentials) as api:
        discovery = await discover(api, devices)
    print(render(discovery, estimate(discovery, client.quotas)), file=out)
    return 0
