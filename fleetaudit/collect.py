"""The worker pool: fans out per device and looks up each firmware and job once per run.

A bounded stream feeds `concurrency` workers; each audits one device at a time, asking the
platform for its module versions and unfinished tasks at once (each action under its own
quota in the client), then the firmware and job behind every unfinished task. Failed calls
come back as `CallFailure` values; only `AuthError` escapes and stops the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fleetaudit.api.client import OtaClient
from fleetaudit.errors import CallFailed
from fleetaudit.models import (
    UNFINISHED_STATUSES,
    CallFailure,
    Device,
    DeviceAudit,
    Firmware,
    Job,
    ModuleVersion,
    Task,
)

DEVICE_NOT_FOUND = "iot.device.NotExistedDevice"

Key = TypeVar("Key")
Value = TypeVar("Value")


class OncePerKey(Generic[Key, Value]):
    """Runs one fetch per key; concurrent askers wait for the first instead of calling too."""

    def __init__(self) -> None:
        self._done: dict[Key, Value | None] = {}
        self._pending: dict[Key, anyio.Event] = {}

    def prime(self, key: Key, value: Value | None) -> None:
        """Record a value learned elsewhere (a resumed run, or a list that held several)."""
        self._done.setdefault(key, value)

    def known(self, key: Key) -> bool:
        return key in self._done

    async def get(self, key: Key, fetch: Callable[[], Awaitable[Value | None]]) -> Value | None:
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
class DeviceResult:
    """Everything the platform said about one device, ready to be judged and written."""

    device: Device
    audit: DeviceAudit
    modules: list[ModuleVersion]
    tasks: list[Task]
    failures: list[CallFailure]


@dataclass(slots=True)
class Lookups:
    """Firmware and jobs fetched at most once per run, shared by every worker.

    New rows land in `new_firmware`, `new_jobs` and `failures`; the pipeline drains them
    into the report so each firmware and job is written once.
    """

    client: OtaClient
    firmware: OncePerKey[str, Firmware] = field(default_factory=OncePerKey)
    jobs: OncePerKey[tuple[str, str], Job] = field(default_factory=OncePerKey)
    firmware_by_id: dict[str, Firmware] = field(default_factory=dict)
    jobs_by_key: dict[tuple[str, str], Job] = field(default_factory=dict)
    new_firmware: list[Firmware] = field(default_factory=list)
    new_jobs: list[Job] = field(default_factory=list)
    failures: list[CallFailure] = field(default_factory=list)

    def remember_firmware(self, firmware: Firmware) -> None:
        self.firmware.prime(firmware.firmware_id, firmware)
        self.firmware_by_id.setdefault(firmware.firmware_id, firmware)

    def remember_job(self, job: Job) -> None:
        key = (job.firmware_id or "", job.job_id)
        if key not in self.jobs_by_key:
            self.jobs.prime(key, job)
            self.jobs_by_key[key] = job

    async def get_firmware(self, firmware_id: str) -> Firmware | None:
        async def fetch() -> Firmware | None:
            try:
                firmware = await self.client.query_firmware(firmware_id)
            except CallFailed as failed:
                self.failures.append(failed.failure)
                return None
            self.firmware_by_id[firmware_id] = firmware
            self.new_firmware.append(firmware)
            return firmware

        return await self.firmware.get(firmware_id, fetch)

    async def get_job(self, task: Task, device: Device) -> Job | None:
        """The job behind a task, listed once per (firmware, job) through any device in it."""
        if not task.firmware_id or not task.job_id:
            return None
        firmware_id, job_id = task.firmware_id, task.job_id

        async def fetch() -> Job | None:
            try:
                jobs = await self.client.list_jobs_by_device(
                    device.product_key, device.device_name, firmware_id
                )
            except CallFailed as failed:
                # The listing is per firmware; the row names the job it was looking for.
                self.failures.append(replace(failed.failure, job_id=job_id))
                return None
            for job in jobs:
                # One listing can name several jobs of this firmware: keep them all, once.
                job_key = (job.firmware_id or firmware_id, job.job_id)
                if job_key not in self.jobs_by_key:
                    self.jobs_by_key[job_key] = job
                    self.new_jobs.append(job)
                    if job_key != (firmware_id, job_id):
                        self.jobs.prime(job_key, job)
            return self.jobs_by_key.get((firmware_id, job_id))

        return await self.jobs.get((firmware_id, job_id), fetch)


async def audit_device(client: OtaClient, lookups: Lookups, device: Device) -> DeviceResult:
    """Ask the platform about one device: modules and tasks at once, then their context."""
    modules: list[ModuleVersion] = []
    tasks: list[Task] = []
    failures: list[CallFailure] = []

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
        group.start_soon(fetch_modules)
        group.start_soon(fetch_tasks)

    if any(failure.error_code == DEVICE_NOT_FOUND for failure in failures):
        audit = DeviceAudit(
            device.product_key, device.device_name, device.iot_id, "not_found", 0, 0, None
        )
        return DeviceResult(device, audit, [], [], [])

    await _fetch_task_context(lookups, device, tasks)
    iot_id = device.iot_id or next((m.iot_id for m in modules if m.iot_id), None)
    audit = DeviceAudit(
        product_key=device.product_key,
        device_name=device.device_name,
        iot_id=iot_id,
        audit_status="error" if failures else "ok",
        module_count=len(modules),
        unfinished_task_count=len(tasks),
        error_code=failures[0].error_code if failures else None,
    )
    return DeviceResult(device, audit, modules, tasks, failures)


async def _fetch_task_context(lookups: Lookups, device: Device, tasks: Iterable[Task]) -> None:
    firmware_ids = {task.firmware_id for task in tasks if task.firmware_id}
    job_tasks = {(task.firmware_id, task.job_id): task for task in tasks if task.job_id}
    if not firmware_ids and not job_tasks:
        return
    async with anyio.create_task_group() as group:
        for firmware_id in firmware_ids:
            group.start_soon(lookups.get_firmware, firmware_id)
        for task in job_tasks.values():
            group.start_soon(lookups.get_job, task, device)


async def fan_out(
    client: OtaClient,
    lookups: Lookups,
    devices: Iterable[Device],
    results: MemoryObjectSendStream[DeviceResult],
    *,
    concurrency: int,
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
                await outbox.send(await audit_device(client, lookups, device))

    async with results, anyio.create_task_group() as group:
        group.start_soon(feed, send_devices)
        for _ in range(concurrency):
            group.start_soon(work, receive_devices.clone(), results.clone())
        receive_devices.close()
