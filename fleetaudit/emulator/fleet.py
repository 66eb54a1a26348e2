"""The emulated platform's state: devices, modules, tasks, firmware and jobs, and cancelling.

`Fleet` is the seam between the HTTP app and the state behind it. Subclasses say what
exists (`StaticFleet` from hand-made values, `SyntheticFleet` derived from a seed); the
base class keeps the only mutable part, an overlay of cancelled tasks, so cancelling
behaves the same in both. Times are UTC epoch milliseconds.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FleetDevice:
    """One device on the platform; `modules` maps module name -> reported version."""

    product_key: str
    device_name: str
    iot_id: str
    modules: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FleetTask:
    """One device upgrade task, in any status (terminal ones included)."""

    task_id: str
    job_id: str
    firmware_id: str
    product_key: str
    device_name: str
    module_name: str
    src_version: str
    dest_version: str
    status: str
    utc_create_ms: int
    utc_modified_ms: int
    product_name: str = ""
    progress: int = 0  # percent; only ListOTATaskByJob shows it
    task_desc: str = ""


@dataclass(frozen=True, slots=True)
class FleetFirmware:
    """One firmware package with every field QueryOTAFirmware returns."""

    firmware_id: str
    firmware_name: str
    product_key: str
    product_name: str
    module_name: str
    src_version: str
    dest_version: str
    status: int
    type: int
    sign_method: str
    firmware_sign: str
    firmware_size: int
    verify_progress: int
    firmware_url: str
    utc_create_ms: int
    utc_modified_ms: int
    firmware_desc: str = ""
    udi: str = ""


@dataclass(frozen=True, slots=True)
class FleetJob:
    """One upgrade job (batch) of a firmware."""

    job_id: str
    firmware_id: str
    product_key: str
    status: str
    job_type: str
    target_selection: str
    selection_type: str
    utc_create_ms: int
    utc_modified_ms: int
    timeout_minutes: int | None = None  # the upgrade timeout; None: the job has none


class Fleet(ABC):
    """What the emulator knows; subclasses define the base state, cancels live in an overlay."""

    def __init__(self) -> None:
        # task_id -> (status, utc_modified_ms): the only state that changes while serving.
        self._overlay: dict[str, tuple[str, int]] = {}

    @abstractmethod
    def device(self, product_key: str, device_name: str) -> FleetDevice | None:
        """The device with this name in this product, if it exists."""

    @abstractmethod
    def device_by_iot_id(self, iot_id: str) -> FleetDevice | None:
        """The device with this IotId, if it exists."""

    @abstractmethod
    def product_exists(self, product_key: str) -> bool:
        """Whether the product exists on the platform."""

    @abstractmethod
    def firmware(self, firmware_id: str) -> FleetFirmware | None:
        """The firmware with this id, if it exists."""

    @abstractmethod
    def _base_tasks(self, device: FleetDevice) -> list[FleetTask]:
        """The device's tasks before any cancel."""

    @abstractmethod
    def _jobs(self, firmware_id: str) -> list[FleetJob]:
        """Every job of one firmware."""

    @abstractmethod
    def product_firmware(self, product_key: str | None) -> list[FleetFirmware]:
        """Every firmware of a product (of every product when None), in a stable order."""

    @abstractmethod
    def job(self, job_id: str) -> FleetJob | None:
        """The job with this id, if it exists."""

    @abstractmethod
    def _base_job_tasks(self, job: FleetJob) -> list[FleetTask]:
        """The job's tasks in every status before any cancel."""

    @abstractmethod
    def iter_device_list(self) -> Iterator[tuple[str, str, str]]:
        """Rows (product_key, device_name, iot_id) of the device list an audit reads."""

    def tasks(self, device: FleetDevice) -> list[FleetTask]:
        """The device's tasks in every status, cancels applied."""
        base = self._base_tasks(device)
        if not self._overlay:
            return base
        return [self._with_overlay(task) for task in base]

    def jobs(self, firmware_id: str) -> list[FleetJob]:
        """Every job of one firmware, of any status."""
        return self._jobs(firmware_id)

    def job_tasks(self, job: FleetJob) -> list[FleetTask]:
        """The job's tasks in every status, cancels applied: the same tasks, in the same
        state, as the per-device listing shows at this moment."""
        base = self._base_job_tasks(job)
        if not self._overlay:
            return base
        return [self._with_overlay(task) for task in base]

    def jobs_of_device(self, device: FleetDevice, firmware_id: str) -> list[FleetJob]:
        """The jobs of a firmware the device took part in (it has a task in them)."""
        job_ids = {t.job_id for t in self._base_tasks(device) if t.firmware_id == firmware_id}
        return [job for job in self._jobs(firmware_id) if job.job_id in job_ids]

    def cancel(
        self,
        product_key: str,
        firmware_id: str,
        device_names: Iterable[str],
        *,
        job_id: str | None,
        cancellable: Collection[str],
        now_ms: int,
    ) -> int:
        """Cancel the matching tasks whose status is cancellable; returns how many changed."""
        changed = 0
        for name in device_names:
            device = self.device(product_key, name)
            if device is None:
                continue  # like an unknown task: nothing to cancel, not an error
            for task in self.tasks(device):
                if task.firmware_id != firmware_id or task.status not in cancellable:
                    continue
                if job_id is not None and task.job_id != job_id:
                    continue
                self._overlay[task.task_id] = ("CANCELED", now_ms)
                changed += 1
        return changed

    def _with_overlay(self, task: FleetTask) -> FleetTask:
        change = self._overlay.get(task.task_id)
        if change is None:
            return task
        return dataclasses.replace(task, status=change[0], utc_modified_ms=change[1])


class StaticFleet(Fleet):
    """A hand-made fleet for tests: exactly the devices, tasks, firmware and jobs given."""

    def __init__(
        self,
        devices: Iterable[FleetDevice] = (),
        tasks: Iterable[FleetTask] = (),
        firmware: Iterable[FleetFirmware] = (),
        jobs: Iterable[FleetJob] = (),
        *,
        missing_devices: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        super().__init__()
        self._devices = {(d.product_key, d.device_name): d for d in devices}
        self._by_iot_id = {d.iot_id: d for d in self._devices.values()}
        self._products = {d.product_key for d in self._devices.values()}
        self._tasks: dict[tuple[str, str], list[FleetTask]] = {}
        for task in tasks:
            self._tasks.setdefault((task.product_key, task.device_name), []).append(task)
        self._firmware = {f.firmware_id: f for f in firmware}
        self._products.update(f.product_key for f in self._firmware.values())
        self._job_list: dict[str, list[FleetJob]] = {}
        self._job_by_id: dict[str, FleetJob] = {}
        for job in jobs:
            self._job_list.setdefault(job.firmware_id, []).append(job)
            self._job_by_id[job.job_id] = job
        self._tasks_by_job: dict[str, list[FleetTask]] = {}
        for listed in self._tasks.values():
            for task in listed:
                self._tasks_by_job.setdefault(task.job_id, []).append(task)
        # Rows listed for auditing that the platform does not know.
        self._missing = list(missing_devices)

    def device(self, product_key: str, device_name: str) -> FleetDevice | None:
        return self._devices.get((product_key, device_name))

    def device_by_iot_id(self, iot_id: str) -> FleetDevice | None:
        return self._by_iot_id.get(iot_id)

    def product_exists(self, product_key: str) -> bool:
        return product_key in self._products

    def firmware(self, firmware_id: str) -> FleetFirmware | None:
        return self._firmware.get(firmware_id)

    def _base_tasks(self, device: FleetDevice) -> list[FleetTask]:
        return self._tasks.get((device.product_key, device.device_name), [])

    def _jobs(self, firmware_id: str) -> list[FleetJob]:
        return self._job_list.get(firmware_id, [])

    def product_firmware(self, product_key: str | None) -> list[FleetFirmware]:
        return [f for f in self._firmware.values() if product_key in (None, f.product_key)]

    def job(self, job_id: str) -> FleetJob | None:
        return self._job_by_id.get(job_id)

    def _base_job_tasks(self, job: FleetJob) -> list[FleetTask]:
        return self._tasks_by_job.get(job.job_id, [])

    def iter_device_list(self) -> Iterator[tuple[str, str, str]]:
        for d in self._devices.values():
            yield d.product_key, d.device_name, d.iot_id
        yield from self._missing
