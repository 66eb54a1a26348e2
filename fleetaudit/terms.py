"""The domain's words as types: audit statuses, severities, finding types, tables, actions.

Every comparison of these across modules goes through the members here, so mypy checks it.
They are `StrEnum`s: a member *is* its string, so it writes to Parquet and JSON as is and
compares equal to the text read back from a report.
"""

from __future__ import annotations

from enum import StrEnum


class AuditStatus(StrEnum):
    """How the audit of one device went (devices.audit_status)."""

    OK = "ok"
    NOT_FOUND = "not_found"
    ERROR = "error"


class Severity(StrEnum):
    """How bad a finding is (findings.severity)."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class FindingType(StrEnum):
    """Every finding the report contract defines (findings.finding_type)."""

    VERSION_DRIFT = "version_drift"
    MODULE_MISSING = "module_missing"
    STALLED_TASK = "stalled_task"
    TASK_SRC_MISMATCH = "task_src_mismatch"
    TASK_ALREADY_APPLIED = "task_already_applied"
    ORPHAN_TASK = "orphan_task"
    FIRMWARE_UNVERIFIED = "firmware_unverified"
    DUPLICATE_TASKS = "duplicate_tasks"
    DEVICE_NOT_FOUND = "device_not_found"


class Table(StrEnum):
    """The tables of a run directory (each `<name>.parquet`)."""

    DEVICES = "devices"
    MODULE_VERSIONS = "module_versions"
    TASKS = "tasks"
    FIRMWARE = "firmware"
    JOBS = "jobs"
    FINDINGS = "findings"
    ERRORS = "errors"
    TASK_DISAGREEMENTS = "task_disagreements"
    CHANGES = "changes"
    CANCEL_PLAN = "cancel_plan"
    REMEDIATION = "remediation"


class Change(StrEnum):
    """What changes.parquet says happened since the previous run of the same series."""

    NEW = "new"  # a finding this run has and the previous run did not
    RESOLVED = "resolved"  # a finding the previous run had and this run does not
    PERSISTING = "persisting"  # a finding both runs have (its first sighting carried forward)
    # A finding the previous run had, on a device this run could not check for it (its calls
    # failed, or its versions were not read: a sample, a tasks-only audit): carried forward
    # with its first sighting, neither resolved nor new.
    UNVERIFIED = "unverified"
    VERSION_CHANGED = "version_changed"  # a module's version moved (from -> to)
    DEVICE_JOINED = "device_joined"  # a device in this run's list, not in the previous one
    DEVICE_LEFT = "device_left"  # a device in the previous run's list, not in this one


class Action(StrEnum):
    """The platform's OTA actions fleetaudit calls (the `Action` request parameter)."""

    LIST_MODULE_VERSIONS = "ListOTAModuleVersionsByDevice"
    LIST_UNFINISHED_TASKS = "ListOTAUnfinishedTaskByDevice"
    QUERY_FIRMWARE = "QueryOTAFirmware"
    LIST_JOBS = "ListOTAJobByDevice"
    CANCEL_TASKS = "CancelOTATaskByDevice"
    # The sweep's listings (SWEEP.md): the account's firmware, a firmware's jobs, a job's tasks.
    LIST_FIRMWARE = "ListOTAFirmware"
    LIST_JOBS_BY_FIRMWARE = "ListOTAJobByFirmware"
    LIST_TASKS_BY_JOB = "ListOTATaskByJob"


class TasksFrom(StrEnum):
    """Where a run reads unfinished tasks: per device, from the jobs' listings, or both."""

    DEVICES = "devices"
    JOBS = "jobs"
    BOTH = "both"


class TaskSource(StrEnum):
    """How one device's tasks were read (devices.tasks_source)."""

    DEVICE = "device"  # ListOTAUnfinishedTaskByDevice
    JOB = "job"  # the sweep's ListOTATaskByJob listings
    BOTH = "both"  # both, compared (tasks_from = "both")


class Disagreement(StrEnum):
    """How the two listings of a task disagree (task_disagreements.kind)."""

    ONLY_BY_DEVICE = "only_by_device"
    ONLY_BY_JOB = "only_by_job"
    STATUS_DIFFERS = "status_differs"


class TaskStatus(StrEnum):
    """A device upgrade task's status; the first four are the unfinished ones."""

    CONFIRM = "CONFIRM"
    QUEUED = "QUEUED"
    NOTIFIED = "NOTIFIED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


UNFINISHED_STATUSES: tuple[TaskStatus, ...] = (
    TaskStatus.CONFIRM,
    TaskStatus.QUEUED,
    TaskStatus.NOTIFIED,
    TaskStatus.IN_PROGRESS,
)
TERMINAL_STATUSES: tuple[TaskStatus, ...] = (
    TaskStatus.SUCCEEDED,
    TaskStatus.FAILED,
    TaskStatus.CANCELED,
)
