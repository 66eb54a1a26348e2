"""The worker pool: fans out per device and looks up each firmware and job once per run.

A bounded stream feeds `concurrency` workers; each audits one device at a time, asking the
platform for its module versions and unfinished tasks at once (each action under its own
quota in the client), then the firmware and job behind every unfinished task. What a run
asks is an `Asking`: module versions or not (a tasks-only audit), and the sweep's tasks
(sweep.py) in place of, or beside (`compare`), the per-device task listing. Failed calls
come back as `CallFailure` values; only `AuthError` escapes and stops the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fleetaudit.api.client import OtaClient
from fleetaudit.audit.crosscheck import task_disagreements
from fleetaudit.errors import CallFailed
from fleetaudit.models import (
    CallFailure,
    Device,
    DeviceAudit,
    DeviceResult,
    Firmware,
    Job,
    ModuleVersion,
    Task,
    TaskDisagreement,
    job_key,
)
from fleetaudit.sweep import Sweep
from fleetaudit.terms import UNFINISHED_STATUSES, Action, AuditStatus, TaskSource

DEVICE_NOT_FOUND = "iot.device.NotExistedDevice"

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


class _OncePerKey(Generic[_Key, _Value]):
    """Runs one fetch per key; concurrent askers wait for the first instead of calling too."""

    def __init__(self) -> None:
        self._done: dict[_Key, _Value | None] = {}
        self._pending: dict[_Key, anyio.Event] = {}

    def prime(self, key: _Key, value: _Value | None) -> None:
        """Record a value learned elsewhere (a resumed run, or a list that held several)."""
        self._done.setdefault(key, value)

    def known(self, key: _Key) -> bool:
        return key in self._done

    async def get(self, key: _Key, fetch: Callable[[], Awaitable[_Value | None]]) -> _Value | None:
        while key not in self._done:
            event = self._pending.get(key)
            if event is None:
                break
            await event.wait()
        else:
            return self._done[key]
        event = self._pending[key] = anyio.Event()
        try:
            value = await fetch()
            self._done.setdefault(key, value)
        finally:
            del self._pending[key]
            event.set()
        return self._done[key]


@dataclass(slots=True)
class Fetched:
    """The rows one caller's lookups fetched first in the run (each is written once)."""

    firmware: list[Firmware] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    failures: list[CallFailure] = field(default_factory=list)


class Lookups:
    """Firmware and jobs fetched at most once per run, shared by every worker.

    What a lookup finds is handed back to whoever asked; what it fetched first lands in the
    asker's `Fetched`, so the pipeline writes each row once. A failed lookup is remembered
    as its `CallFailure` (as None when it failed in an earlier session) and not retried.
    """

    def __init__(
        self,
        client: OtaClient,
        *,
        firmware: Iterable[Firmware] = (),
        jobs: Iterable[Job] = (),
        failed_firmware: Collection[str] = (),
        failed_jobs: Collection[tuple[str, str]] = (),
    ) -> None:
        self._client = client
        self._firmware: _OncePerKey[str, Firmware | CallFailure] = _OncePerKey()
        self._jobs: _OncePerKey[tuple[str, str], Job | CallFailure] = _OncePerKey()
        for package in firmware:
            self._firmware.prime(package.firmware_id, package)
        for job in jobs:
            self._jobs.prime(job_key(job.firmware_id, job.job_id), job)
        # A lookup that failed for good is finished work too: asking again would add a
        # second answer to a run whose errors table already holds the first.
        for firmware_id in failed_firmware:
            self._firmware.prime(firmware_id, None)
        for key in failed_jobs:
            self._jobs.prime(key, None)

    def prime_listed(self, firmware: Iterable[Firmware], jobs: Iterable[Job]) -> Fetched:
        """Take in the sweep's firmware and jobs; the rows not known before (write them once).

        ListOTAFirmware's rows stand in for QueryOTAFirmware's (the rules need neither the
        URL nor the verify progress they lack), and the jobs for ListOTAJobByDevice's.
        """
        fetched = Fetched()
        for package in firmware:
            if not self._firmware.known(package.firmware_id):
                self._firmware.prime(package.firmware_id, package)
                fetched.firmware.append(package)
        for job in jobs:
            key = job_key(job.firmware_id, job.job_id)
            if not self._jobs.known(key):
                self._jobs.prime(key, job)
                fetched.jobs.append(job)
        return fetched

    async def firmware(self, firmware_id: str, fetched: Fetched) -> Firmware | CallFailure | None:
        """The firmware, or the failure that kept it from being read (None: a past session)."""

        async def fetch() -> Firmware | CallFailure:
            try:
                package = await self._client.query_firmware(firmware_id)
            except CallFailed as failed:
                fetched.failures.append(failed.failure)
                return failed.failure
            fetched.firmware.append(package)
            return package

        return await self._firmware.get(firmware_id, fetch)

    async def job(self, task: Task, device: Device, fetched: Fetched) -> Job | None:
        """The job behind a task, listed once per (firmware, job) through any device in it."""
        if not task.firmware_id or not task.job_id:
            return None
        firmware_id, job_id = task.firmware_id, task.job_id

        async def fetch() -> Job | CallFailure | None:
            try:
                listed = await self._client.list_jobs_by_device(
                    device.product_key, device.device_name, firmware_id
                )
            except CallFailed as failed:
                # The listing is per firmware; the row names the job it was looking for.
                failure = replace(failed.failure, job_id=job_id)
                fetched.failures.append(failure)
                return failure
            for job in listed:
                # The listing is of this firmware's jobs: a job that does not say so still
                # belongs to it, and is keyed (and written) that way.
                job = job if job.firmware_id else replace(job, firmware_id=firmware_id)
                key = job_key(job.firmware_id, job.job_id)
                # One listing can name several jobs of this firmware, and several listings
                # the same job: the first to name a job writes it.
                if not self._jobs.known(key):
                    self._jobs.prime(key, job)
                    fetched.jobs.append(job)
            return None  # the job, when listed, is primed above and wins over this

        value = await self._jobs.get(job_key(firmware_id, job_id), fetch)
        return value if isinstance(value, Job) else None


@dataclass(frozen=True)
class Asking:
    """What a run asks about each device.

    `modules`: list its module versions (False: a tasks-only audit); `sampled`, when set,
    narrows that to the (product_key, device_name) of a sampled gate. `sweep`: the tasks the
    jobs' listings found, used instead of the per-device listing for the devices of the
    products it covers, or, with `compare`, beside it (the per-device listing then wins and
    every difference becomes a `TaskDisagreement`).
    """

    modules: bool = True
    sweep: Sweep | None = None
    compare: bool = False
    sampled: Collection[tuple[str, str]] | None = None

    def modules_of(self, device: Device) -> bool:
        """Whether this device's module versions are asked for."""
        if self.sampled is None:
            return self.modules
        return self.modules and (device.product_key, device.device_name) in self.sampled


async def audit_device(
    client: OtaClient, lookups: Lookups, device: Device, asking: Asking = Asking()
) -> DeviceResult:
    """Ask the platform about one device: modules and tasks at once, then their context."""
    modules: list[ModuleVersion] = []
    tasks: list[Task] = []
    failures: list[CallFailure] = []
    swept = asking.sweep.tasks_of(device) if asking.sweep is not None else None
    per_device = swept is None or asking.compare
    ask_modules = asking.modules_of(device)

    async def fetch_modules() -> None:
        try:
            modules.extend(await client.list_module_versions(device))
        except CallFailed as failed:
            failures.append(failed.failure)

    async def fetch_tasks() -> None:
        try:
            found = await client.list_unfinished_tasks(device)
        except CallFailed as failed:
            failures.append(failed.failure)
            return
        # The platform filters by status already; a server that does not is not trusted.
        tasks.extend(task for task in found if task.task_status in UNFINISHED_STATUSES)

    async with anyio.create_task_group() as group:
        if ask_modules:
            group.start_soon(fetch_modules)
        if per_device:
            group.start_soon(fetch_tasks)

    if any(failure.error_code == DEVICE_NOT_FOUND for failure in failures):
        audit = DeviceAudit(
            device.product_key, device.device_name, device.iot_id, AuditStatus.NOT_FOUND, 0, 0, None
        )
        return DeviceResult(device, audit, [], [], [])

    source, disagreements = _tasks_source(device, tasks, swept, failures, asking.compare)
    if source == TaskSource.JOB and swept is not None:
        tasks = swept
    elif source == TaskSource.BOTH and swept is not None:
        tasks = _with_job_details(tasks, swept)
    fetched = Fetched()
    firmware, jobs = await _fetch_task_context(lookups, device, tasks, fetched)
    iot_id = device.iot_id or next((m.iot_id for m in modules if m.iot_id), None)
    audit = DeviceAudit(
        product_key=device.product_key,
        device_name=device.device_name,
        iot_id=iot_id,
        audit_status=AuditStatus.ERROR if failures else AuditStatus.OK,
        module_count=len(modules) if ask_modules else None,
        unfinished_task_count=len(tasks),
        error_code=failures[0].error_code if failures else None,
        tasks_source=source,
    )
    return DeviceResult(
        device,
        audit,
        modules,
        tasks,
        failures,
        firmware=firmware,
        jobs=jobs,
        new_firmware=fetched.firmware,
        new_jobs=fetched.jobs,
        lookup_failures=fetched.failures,
        disagreements=disagreements,
    )


def _tasks_source(
    device: Device,
    by_device: list[Task],
    swept: list[Task] | None,
    failures: list[CallFailure],
    compare: bool,
) -> tuple[TaskSource | None, list[TaskDisagreement]]:
    """Which listing the device's tasks come from, and where the two disagree."""
    listed = not any(f.action == Action.LIST_UNFINISHED_TASKS for f in failures)
    if swept is None:
        return (TaskSource.DEVICE if listed else None), []
    if not compare or not listed:
        # Compared but the device's own listing failed: the sweep's tasks still stand.
        return TaskSource.JOB, []
    return TaskSource.BOTH, task_disagreements(device, by_device, swept)


def _with_job_details(by_device: list[Task], by_job: list[Task]) -> list[Task]:
    """The per-device tasks, with the progress, description and timeout only the job's
    listing tells, where it lists the same task in the same status."""
    details = {task.task_id: task for task in by_job}
    enriched = []
    for task in by_device:
        seen = details.get(task.task_id)
        if seen is not None and seen.task_status == task.task_status:
            task = replace(
                task,
                progress=seen.progress,
                task_desc=seen.task_desc,
                job_timeout_minutes=seen.job_timeout_minutes,
            )
        enriched.append(task)
    return enriched


async def _fetch_task_context(
    lookups: Lookups, device: Device, tasks: Iterable[Task], fetched: Fetched
) -> tuple[dict[str, Firmware], dict[tuple[str, str], Job]]:
    """The firmware and jobs behind a device's tasks, as far as they could be read."""
    firmware_ids = {task.firmware_id for task in tasks if task.firmware_id}
    job_tasks = {job_key(task.firmware_id, task.job_id): task for task in tasks if task.job_id}
    firmware: dict[str, Firmware] = {}
    jobs: dict[tuple[str, str], Job] = {}

    async def get_firmware(firmware_id: str) -> None:
        package = await lookups.firmware(firmware_id, fetched)
        if isinstance(package, Firmware):
            firmware[firmware_id] = package

    async def get_job(key: tuple[str, str], task: Task) -> None:
        job = await lookups.job(task, device, fetched)
        if job is not None:
            jobs[key] = job

    if firmware_ids or job_tasks:
        async with anyio.create_task_group() as group:
            for firmware_id in firmware_ids:
                group.start_soon(get_firmware, firmware_id)
            for key, task in job_tasks.items():
                group.start_soon(get_job, key, task)
    return firmware, jobs


async def fan_out(
    client: OtaClient,
    lookups: Lookups,
    devices: Iterable[Device],
    results: MemoryObjectSendStream[DeviceResult],
    *,
    concurrency: int,
    asking: Asking = Asking(),
) -> None:
    """Audit every device with `concurrency` workers, sending each result as it finishes.

    The device iterator is read lazily through a bounded stream, so a long list is never
    held in memory; results arrive in completion order, not list order. `results` is
    closed when every device is done.
    """
    send_devices, receive_devices = anyio.create_memory_object_stream[Device](concurrency)

    async def feed(stream: MemoryObjectSendStream[Device]) -> None:
        async with stream:
            for device in devices:
                await stream.send(device)

    async def work(
        inbox: MemoryObjectReceiveStream[Device], outbox: MemoryObjectSendStream[DeviceResult]
    ) -> None:
        async with inbox, outbox:
            async for device in inbox:
                await outbox.send(await audit_device(client, lookups, device, asking))

    async with results, anyio.create_task_group() as group:
        group.start_soon(feed, send_devices)
        for _ in range(concurrency):
            group.start_soon(work, receive_devices.clone(), results.clone())
        receive_devices.close()
