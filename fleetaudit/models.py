"""The values that flow through a run: devices, what the API says about them, failures.

Plain frozen dataclasses with no behaviour. Times are UTC epoch milliseconds (`int`), ids
and versions are strings (ids are opaque: never parse them as numbers). Column names in
the reports are the field names here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fleetaudit.terms import Action, AuditStatus, Disagreement, FindingType, Severity, TaskSource


@dataclass(frozen=True, slots=True)
class Device:
    """One line of the device list."""

    product_key: str
    device_name: str
    iot_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModuleVersion:
    """One module version a device reports (ListOTAModuleVersionsByDevice)."""

    product_key: str
    device_name: str
    iot_id: str | None
    module_name: str
    module_version: str


@dataclass(frozen=True, slots=True)
class Task:
    """One device upgrade task (ListOTAUnfinishedTaskByDevice)."""

    task_id: str
    job_id: str | None
    firmware_id: str | None
    product_key: str | None
    product_name: str | None
    device_name: str | None
    iot_id: str | None
    module_name: str
    src_version: str | None
    dest_version: str | None
    task_status: str
    utc_create: int | None
    utc_modified: int | None
    # Only ListOTATaskByJob tells these (None from the per-device listing): the progress in
    # percent, why a task failed, timed out or was cancelled, and the job's upgrade timeout.
    progress: int | None = None
    task_desc: str | None = None
    job_timeout_minutes: int | None = None


@dataclass(frozen=True, slots=True)
class Firmware:
    """One firmware package (QueryOTAFirmware, or ListOTAFirmware without URL and verify
    progress). `firmware_url` keeps no query string."""

    firmware_id: str
    firmware_name: str | None
    product_key: str | None
    product_name: str | None
    module_name: str | None
    src_version: str | None
    dest_version: str | None
    status: int | None
    type: int | None
    sign_method: str | None
    firmware_sign: str | None
    firmware_size: int | None
    verify_progress: int | None
    firmware_url: str | None
    utc_create: int | None
    utc_modified: int | None


@dataclass(frozen=True, slots=True)
class Job:
    """One upgrade job (batch) as ListOTAJobByDevice or ListOTAJobByFirmware reports it."""

    job_id: str
    firmware_id: str | None
    product_key: str | None
    job_status: str | None
    job_type: str | None
    target_selection: str | None
    utc_create: int | None
    utc_modified: int | None


@dataclass(frozen=True, slots=True)
class CallFailure:
    """A call that still failed after retries: one row of the errors table."""

    action: Action
    product_key: str | None
    device_name: str | None
    firmware_id: str | None
    job_id: str | None
    error_code: str
    error_message: str
    http_status: int | None
    attempts: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair. The secret never shows in a repr, a log line or a report."""

    access_key_id: str
    access_key_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, access_key_secret='***')"


@dataclass(frozen=True, slots=True)
class DeviceAudit:
    """How the audit of one device went: one row of the devices table."""

    product_key: str
    device_name: str
    iot_id: str | None
    audit_status: AuditStatus
    module_count: int | None  # None: a tasks-only audit did not ask
    unfinished_task_count: int
    error_code: str | None
    tasks_source: TaskSource | None = None  # how its tasks were read (None: not at all)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found: one row of the findings table. Fields that do not apply are None."""

    finding_type: FindingType
    severity: Severity
    product_key: str
    device_name: str | None
    iot_id: str | None
    module_name: str | None
    observed_version: str | None
    expected_version: str | None
    task_id: str | None
    task_status: str | None
    firmware_id: str | None
    job_id: str | None
    age_seconds: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class TaskDisagreement:
    """A task the two listings disagree on (tasks_from = "both"): one row of its table."""

    kind: Disagreement
    product_key: str
    device_name: str
    task_id: str
    job_id: str | None
    firmware_id: str | None
    module_name: str | None
    status_by_device: str | None  # None: the per-device listing does not show it
    status_by_job: str | None  # None: the job's listing does not show it


def job_key(firmware_id: str | None, job_id: str) -> tuple[str, str]:
    """How a run knows a job: (firmware_id, job_id), "" for a missing firmware id.

    The one spelling of the key: the lookups, the rows read back on resume and the finding
    rules all use it, so a job seen in one session is recognised in the next.
    """
    return (firmware_id or "", job_id)


@dataclass(frozen=True, slots=True)
class DeviceResult:
    """Everything the platform said about one device, and the lookups it caused.

    `firmware` and `jobs` are the run's lookup tables as far as this device's tasks reach
    (jobs keyed by `job_key`); `new_firmware`, `new_jobs` and `lookup_failures` are the rows
    this device fetched first in the run, so each is written exactly once.
    """

    device: Device
    audit: DeviceAudit
    modules: Sequence[ModuleVersion]
    tasks: Sequence[Task]
    failures: Sequence[CallFailure]
    firmware: Mapping[str, Firmware] = field(default_factory=dict)
    jobs: Mapping[tuple[str, str], Job] = field(default_factory=dict)
    new_firmware: Sequence[Firmware] = ()
    new_jobs: Sequence[Job] = ()
    lookup_failures: Sequence[CallFailure] = ()
    disagreements: Sequence[TaskDisagreement] = ()
