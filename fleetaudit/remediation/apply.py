"""Applying a cancel plan through the client, and the `fleetaudit cancel` command itself.

`apply_plan` re-reads, cancels and re-reads again through an `OtaClient` (the only
platform I/O of remediation); `cancel_command` is what the CLI calls: it reads the run
directory, prints the plan, and either writes cancel-plan.parquet (dry run) or applies the
plan and appends the outcomes to remediation.parquet.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

import anyio

from fleetaudit.api.client import ClientSettings, open_client
from fleetaudit.credentials import KEY_ID_ENV, SECRET_ENV
from fleetaudit.devices import read_devices
from fleetaudit.durations import time_id
from fleetaudit.errors import AuthError, CallFailed, UsageError
from fleetaudit.models import CallFailure, Credentials, Device, Task
from fleetaudit.remediation.files import (
    append_outcomes,
    device_keys,
    manifest_endpoint,
    manifest_setting,
    read_findings,
    write_plan,
)
from fleetaudit.remediation.plan import (
    DEFAULT_FINDING_TYPES,
    Batch,
    CallResult,
    CancelCall,
    DeviceKey,
    DeviceTasks,
    Plan,
    PlannedTask,
    TaskOutcome,
    build_plan,
    classify,
    exit_code,
    group_calls,
    recheck,
    validate_finding_types,
)
from fleetaudit.remediation.render import format_outcomes, format_plan

T = TypeVar("T")


class CancelClient(Protocol):
    """The part of `OtaClient` remediation uses."""

    async def list_unfinished_tasks(self, device: Device) -> list[Task]: ...

    async def cancel_tasks(
        self,
        product_key: str,
        firmware_id: str,
        device_names: Sequence[str],
        job_id: str | None = None,
    ) -> str: ...


async def _gather(
    jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int
) -> list[T | CallFailure]:
    """Run `jobs` at most `concurrency` at a time; a failed call becomes its CallFailure.

    AuthError stops everything at once and is raised as itself (not in an exception group),
    so the CLI maps it to exit 3 like any other command.
    """
    results: list[T | CallFailure | None] = [None] * len(jobs)
    abort: list[AuthError] = []
    limiter = anyio.CapacityLimiter(max(concurrency, 1))

    async def run(i: int, job: Callable[[], Awaitable[T]]) -> None:
        async with limiter:
            try:
                results[i] = await job()
            except CallFailed as failed:
                results[i] = failed.failure
            except AuthError as error:
                abort.append(error)
                tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for i, job in enumerate(jobs):
            tg.start_soon(run, i, job)
    if abort:
        raise abort[0]
    done = [result for result in results if result is not None]
    assert len(done) == len(jobs)  # every job stored a result or a failure
    return done


async def read_tasks(
    client: CancelClient, tasks: Iterable[PlannedTask], concurrency: int
) -> dict[DeviceKey, DeviceTasks]:
    """Each planned device's unfinished tasks as the platform lists them now."""
    devices = {task.device: Device(*task.device, task.iot_id) for task in tasks}

    def reader(device: Device) -> Callable[[], Awaitable[list[Task]]]:
        return lambda: client.list_unfinished_tasks(device)

    results = await _gather([reader(d) for d in devices.values()], concurrency)
    return dict(zip(devices, results, strict=True))


async def make_calls(
    client: CancelClient, calls: Sequence[CancelCall], concurrency: int
) -> list[CallResult]:
    """Make every cancel call; each result is its request id or its CallFailure."""

    def caller(call: CancelCall) -> Callable[[], Awaitable[str]]:
        return lambda: client.cancel_tasks(
            call.product_key, call.firmware_id, call.device_names, call.job_id
        )

    return await _gather([caller(call) for call in calls], concurrency)


async def apply_plan(
    client: CancelClient, plan: Plan, batch: Batch, *, concurrency: int = 16
) -> list[TaskOutcome]:
    """Re-check, cancel, confirm: the outcome of every planned task, in plan order."""
    before = await read_tasks(client, plan.tasks, concurrency)
    to_cancel, settled = recheck(plan.tasks, before, batch)
    calls = group_calls(to_cancel)
    results = await make_calls(client, calls, concurrency)
    after = await read_tasks(client, to_cancel, concurrency)
    outcomes = settled + classify(to_cancel, calls, results, after, batch)
    order = {task.task_id: i for i, task in enumerate(plan.tasks)}
    return sorted(outcomes, key=lambda o: order[o.task_id])


async def cancel_command(
    run_dir: Path,
    *,
    finding_types: Sequence[str] | None = None,
    device_list: Path | None = None,
    endpoint: str | None = None,
    iot_instance_id: str | None = None,
    apply: bool = False,
    credentials: Credentials | None = None,
    out: TextIO,
    quotas: Mapping[str, float] | None = None,
    concurrency: int = 16,
    now_ms: int | None = None,
    rng: random.Random | None = None,
) -> int:
    """`fleetaudit cancel`: print the plan; dry run writes cancel-plan.parquet, `apply`
    cancels and appends outcomes to remediation.parquet. Returns the exit code (0 all done,
    1 some task stayed open or failed); raises UsageError (2) or AuthError (3)."""
    try:
        types = validate_finding_types(finding_types or DEFAULT_FINDING_TYPES)
    except ValueError as error:
        raise UsageError(str(error)) from None
    devices = device_keys(read_devices(device_list)) if device_list is not None else None
    plan = build_plan(read_findings(run_dir), types, devices)
    if not apply:
        print(format_plan(plan), file=out)
        print(f"Plan written to {write_plan(run_dir, plan.tasks)}", file=out)
        return 0
    # Settle every usage problem before printing anything that looks like progress.
    settings = _client_settings(run_dir, endpoint, quotas, concurrency, iot_instance_id)
    if credentials is None:
        raise UsageError(f"--apply needs credentials ({KEY_ID_ENV} and {SECRET_ENV})")
    print(format_plan(plan, applying=True), file=out)
    if not plan.tasks:
        return 0
    applied_at = now_ms if now_ms is not None else int(time.time() * 1000)
    batch = Batch(time_id(applied_at, (rng or random.Random()).getrandbits(24)), applied_at)
    async with open_client(settings, credentials) as client:
        outcomes = await apply_plan(client, plan, batch, concurrency=concurrency)
    path = append_outcomes(run_dir, outcomes)
    print(f"\n{format_outcomes(outcomes)}", file=out)
    print(f"Batch {batch.batch_id} appended to {path}", file=out)
    return exit_code(outcomes)


def _client_settings(
    run_dir: Path,
    endpoint: str | None,
    quotas: Mapping[str, float] | None,
    concurrency: int,
    iot_instance_id: str | None = None,
) -> ClientSettings:
    """Client settings for the apply: the endpoint and the IoT instance id from the options,
    else from the run's manifest (a run against an instance cancels on the same instance)."""
    resolved = endpoint or manifest_endpoint(run_dir)
    if resolved is None:
        raise UsageError(f"{run_dir}: the manifest records no endpoint; pass --endpoint URL")
    instance = iot_instance_id or manifest_setting(run_dir, "iot_instance_id")
    if quotas is None:
        return ClientSettings(endpoint=resolved, concurrency=concurrency, iot_instance_id=instance)
    return ClientSettings(
        endpoint=resolved, quotas=quotas, concurrency=concurrency, iot_instance_id=instance
    )
