"""The join: one device's answers and the run's lookups -> its rows of every table (pure).

`device_rows` is the whole of what a device contributes to a run's report: its devices row,
its module and task rows, the findings the rules make of them, its errors, and the firmware
and jobs it was the first to fetch. The recorder only writes what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from fleetaudit.audit.findings import device_findings, device_not_found_finding, task_age_seconds
from fleetaudit.models import (
    CallFailure,
    DeviceAudit,
    DeviceResult,
    Finding,
    Firmware,
    Job,
    ModuleVersion,
    Task,
    TaskDisagreement,
)
from fleetaudit.policy import Policy
from fleetaudit.terms import Action, AuditStatus, Table

_TASK_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(Task))


@dataclass(frozen=True, slots=True)
class DeviceRows:
    """One device's rows, table by table; the tasks rows carry each task's age."""

    devices: Sequence[DeviceAudit]
    module_versions: Sequence[ModuleVersion]
    tasks: Sequence[Mapping[str, object]]
    findings: Sequence[Finding]
    errors: Sequence[CallFailure]
    firmware: Sequence[Firmware] = ()
    jobs: Sequence[Job] = ()
    task_disagreements: Sequence[TaskDisagreement] = ()

    def by_table(self) -> dict[Table, Sequence[object]]:
        """The non-empty tables and their rows, in the order of the report's tables."""
        tables: dict[Table, Sequence[object]] = {
            Table.DEVICES: self.devices,
            Table.MODULE_VERSIONS: self.module_versions,
            Table.TASKS: self.tasks,
            Table.FIRMWARE: self.firmware,
            Table.JOBS: self.jobs,
            Table.FINDINGS: self.findings,
            Table.ERRORS: self.errors,
            Table.TASK_DISAGREEMENTS: self.task_disagreements,
        }
        return {table: rows for table, rows in tables.items() if rows}


def device_rows(
    result: DeviceResult,
    *,
    expected: Mapping[tuple[str, str], str],
    policy: Policy,
    now_ms: int,
) -> DeviceRows:
    """Every row one device's result adds to the run.

    The firmware and jobs the finding rules see are the result's own (`result.firmware`,
    `result.jobs`): the run's lookup tables as far as this device's tasks reach.
    """
    findings: list[Finding] = []
    if result.audit.audit_status == AuditStatus.NOT_FOUND:
        findings.append(device_not_found_finding(result.device))
    elif (tasks_only := result.audit.module_count is None) or _modules_listed(result):
        # A tasks-only audit runs the rules that need no module versions. A full audit needs
        # its module list: without it a device would look as if it lacked every targeted
        # module, and its devices and errors rows already say it could not be audited.
        findings = device_findings(
            result.device,
            () if tasks_only else result.modules,
            result.tasks,
            expected=expected,
            firmware=result.firmware,
            jobs=result.jobs,
            policy=policy,
            now_ms=now_ms,
            modules_listed=not tasks_only,
        )
    return DeviceRows(
        devices=[result.audit],
        module_versions=result.modules,
        tasks=[task_row(task, task_age_seconds(task, now_ms)) for task in result.tasks],
        findings=findings,
        errors=[*result.failures, *result.lookup_failures],
        firmware=result.new_firmware,
        jobs=result.new_jobs,
        task_disagreements=result.disagreements,
    )


def task_row(task: Task, age_seconds: int | None) -> dict[str, object]:
    """A tasks-table row: the task's fields plus its age (the model has no age of its own)."""
    row: dict[str, object] = {name: getattr(task, name) for name in _TASK_FIELDS}
    row["age_seconds"] = age_seconds
    return row


def _modules_listed(result: DeviceResult) -> bool:
    return not any(f.action == Action.LIST_MODULE_VERSIONS for f in result.failures)
