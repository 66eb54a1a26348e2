"""The sweep: every unfinished task of the listed products, from the jobs instead of each device.

For each product of the device list it lists the product's firmware (ListOTAFirmware), every
job of each firmware of any status (ListOTAJobByFirmware: completed and cancelled jobs can
still hold unfinished tasks), and each job's tasks in each of the four unfinished statuses
(ListOTATaskByJob). The cost grows with firmware, jobs and tasks, not with devices.

Never a silent gap: a product is *covered* only when every listing that could hold one of
its tasks was read completely. A listing that still fails after retries, or that passes the
100,000-row window, leaves its product uncovered, and the run asks each of that product's
devices per device instead. Failed calls come back as `CallFailure` values; only
`AuthError` escapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio

from fleetaudit.api.client import OtaClient
from fleetaudit.api.responses import WindowExceeded
from fleetaudit.errors import CallFailed
from fleetaudit.models import CallFailure, Device, Firmware, Job, Task
from fleetaudit.terms import UNFINISHED_STATUSES


@dataclass
class Sweep:
    """What the sweep read: each covered product's unfinished tasks, by device.

    `tasks_of(device)` hands a device its tasks once (an empty list when it has none) or
    None when its product is not covered; what is never handed out belongs to devices that
    are not in the list (`unclaimed`).
    """

    products: frozenset[str]
    covered: frozenset[str]
    firmware: list[Firmware] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    failures: list[CallFailure] = field(default_factory=list)
    past_window: list[str] = field(default_factory=list)  # job ids
    task_count: int = 0
    _tasks: dict[tuple[str, str], list[Task]] = field(default_factory=dict)

    def add(self, product_key: str, task: Task) -> None:
        """One listed task. A task that moved on while its job's four status listings were
        read shows in two of them: it is kept once, as last modified."""
        assert task.device_name is not None
        key = (task.product_key or product_key, task.device_name)
        held = self._tasks.setdefault(key, [])
        for index, other in enumerate(held):
            if other.task_id == task.task_id:
                if (task.utc_modified or 0) >= (other.utc_modified or 0):
                    held[index] = task
                return
        held.append(task)
        self.task_count += 1

    def tasks_of(self, device: Device) -> list[Task] | None:
        """The device's unfinished tasks (each device once), None: ask the device itself."""
        if device.product_key not in self.covered:
            return None
        return self._tasks.pop((device.product_key, device.device_name), [])

    def unclaimed(self) -> tuple[int, int]:
        """(devices, tasks) the sweep found that no listed device claimed."""
        left = [tasks for key, tasks in self._tasks.items() if key[0] in self.covered]
        return len(left), sum(len(tasks) for tasks in left)

    def record(self) -> dict[str, object]:
        """The manifest's account of the sweep (this session's)."""
        devices, tasks = self.unclaimed()
        return {
            "products": len(self.products),
            "products_covered": len(self.covered),
            "firmware": len(self.firmware),
            "jobs": len(self.jobs),
            "unfinished_tasks": self.task_count,
            "listings_failed": len(self.failures),
            "jobs_past_window": sorted(self.past_window),
            "tasks_outside_device_list": tasks,
            "devices_outside_device_list": devices,
        }


async def sweep_tasks(client: OtaClient, product_keys: Iterable[str]) -> Sweep:
    """List every unfinished task of these products through the jobs' listings."""
    products = frozenset(product_keys)
    uncovered: set[str] = set()
    sweep = Sweep(products=products, covered=frozenset())

    def failed(product_key: str, failure: CallFailure) -> None:
        sweep.failures.append(failure)
        uncovered.add(product_key)

    async def job_listing(product_key: str, job: Job, module: str | None, status: str) -> None:
        try:
            tasks = await client.list_job_tasks(job, status, module_name=module)
        except CallFailed as error:
            failed(product_key, error.failure)
            return
        except WindowExceeded:
            sweep.past_window.append(job.job_id)
            uncovered.add(product_key)
            return
        for task in tasks:
            assert task.device_name is not None  # the listing requires it
            sweep.add(product_key, task)

    async def job_listings(product_key: str, job: Job, module: str | None) -> None:
        # One status after another, in the order tasks move through them: a task that moves
        # on while its job is read lands in a listing not read yet, never in one already
        # read (read at once, it could slip between two listings and be in neither).
        for status in UNFINISHED_STATUSES:
            await job_listing(product_key, job, module, status)

    async def firmware_jobs(group: anyio.abc.TaskGroup, package: Firmware, product: str) -> None:
        try:
            jobs = await client.list_jobs_by_firmware(package)
        except CallFailed as error:
            failed(product, error.failure)
            return
        sweep.jobs.extend(jobs)
        for job in jobs:
            group.start_soon(job_listings, product, job, package.module_name)

    async def product_firmware(group: anyio.abc.TaskGroup, product_key: str) -> None:
        try:
            listed = await client.list_firmware(product_key)
        except CallFailed as error:
            failed(product_key, error.failure)
            return
        sweep.firmware.extend(listed)
        for package in listed:
            group.start_soon(firmware_jobs, group, package, product_key)

    async with anyio.create_task_group() as group:
        for product_key in sorted(products):
            group.start_soon(product_firmware, group, product_key)
    sweep.covered = products - uncovered
    return sweep
