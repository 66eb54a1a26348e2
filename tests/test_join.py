"""The join: one device's result and the run's lookups become its rows of every table."""

from __future__ import annotations

from fleetaudit.audit.join import device_rows
from fleetaudit.models import (
    CallFailure,
    Device,
    DeviceAudit,
    DeviceResult,
    Firmware,
    Job,
    ModuleVersion,
    Task,
)
from fleetaudit.policy import Policy, Target
from fleetaudit.terms import Action, AuditStatus, FindingType, Table

NOW = 1_732_009_663_000
DEVICE = Device("pk", "dev-1", "iot-1")
POLICY = Policy(targets=(Target("pk", "default", version="3.0"),))
EXPECTED = {("pk", "default"): "3.0"}
FIRMWARE = Firmware(
    "fw1", None, "pk", None, None, None, "3.0", 0, 0, None, None, None, None, None, None, None
)
JOB = Job("j1", "fw1", "pk", "CANCELED", "UPGRADE_FIRMWARE", "ALL", None, None)
TASK = Task(
    "t1", "j1", "fw1", "pk", None, "dev-1", "iot-1", "default", "1.0", "3.0", "QUEUED",
    NOW - 60_000, NOW - 60_000,
)  # fmt: skip
MODULE = ModuleVersion("pk", "dev-1", "iot-1", "default", "1.0")


def _failure(action: Action) -> CallFailure:
    return CallFailure(action, "pk", "dev-1", None, None, "InternalError", "m", 500, 8, None)


def _audit(status: AuditStatus, modules: int = 1, tasks: int = 1) -> DeviceAudit:
    return DeviceAudit("pk", "dev-1", "iot-1", status, modules, tasks, None)


def test_rules_see_the_lookups_the_result_carries_and_new_rows_are_written() -> None:
    """Findings use the result's firmware and jobs; only what it fetched first is written."""
    result = DeviceResult(
        DEVICE, _audit(AuditStatus.OK), [MODULE], [TASK], [],
        firmware={"fw1": FIRMWARE}, jobs={("fw1", "j1"): JOB},
        new_firmware=[FIRMWARE], new_jobs=[], lookup_failures=[_failure(Action.LIST_JOBS)],
    )  # fmt: skip
    rows = device_rows(result, expected=EXPECTED, policy=POLICY, now_ms=NOW)
    types = {finding.finding_type for finding in rows.findings}
    assert {FindingType.VERSION_DRIFT, FindingType.ORPHAN_TASK} <= types
    assert FindingType.FIRMWARE_UNVERIFIED in types
    tables = rows.by_table()
    assert tables[Table.FIRMWARE] == [FIRMWARE]
    assert Table.JOBS not in tables
    assert tables[Table.ERRORS] == rows.errors
    assert [e.action for e in rows.errors] == [Action.LIST_JOBS]
    assert rows.tasks[0]["age_seconds"] == 60


def test_a_device_without_its_module_list_gets_no_findings() -> None:
    """When the module listing failed, no rule runs: the errors row says why."""
    failure = _failure(Action.LIST_MODULE_VERSIONS)
    result = DeviceResult(DEVICE, _audit(AuditStatus.ERROR, modules=0), [], [TASK], [failure])
    rows = device_rows(result, expected=EXPECTED, policy=POLICY, now_ms=NOW)
    assert (list(rows.findings), list(rows.errors), list(rows.devices)) == (
        [],
        [failure],
        [result.audit],
    )


def test_a_device_the_platform_does_not_know_gets_one_finding() -> None:
    """A not_found device has its devices row and a device_not_found finding, nothing else."""
    result = DeviceResult(DEVICE, _audit(AuditStatus.NOT_FOUND, 0, 0), [], [], [])
    rows = device_rows(result, expected=EXPECTED, policy=POLICY, now_ms=NOW)
    assert [f.finding_type for f in rows.findings] == [FindingType.DEVICE_NOT_FOUND]
    assert set(rows.by_table()) == {Table.DEVICES, Table.FINDINGS}
