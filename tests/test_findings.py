"""Every finding rule of the contract: when it fires, when it must not, and what it says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from fleetaudit.audit.findings import (
    device_findings,
    device_not_found_finding,
    expected_versions,
    targeted_modules,
)
from fleetaudit.audit.majority import VersionCounts, majority_drift_findings
from fleetaudit.models import Device, Finding, Firmware, Job, ModuleVersion, Task
from fleetaudit.policy import Policy, Target
from fleetaudit.terms import FindingType, Severity

NOW = 1_732_009_663_000
HOUR = 3600
DEVICE = Device("pk", "dev-1", None)
POLICY = Policy(
    targets=(
        Target("pk", "default", firmware_id="fw-target"),
        Target("pk", "ble", version="2.4.1"),
    )
)


def firmware(firmware_id: str, *, status: int | None = 1, dest: str | None = "3.0") -> Firmware:
    return Firmware(
        firmware_id,
        None,
        "pk",
        None,
        None,
        None,
        dest,
        status,
        0,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )


def job(job_id: str, status: str, firmware_id: str = "fw1") -> Job:
    return Job(job_id, firmware_id, "pk", status, "UPGRADE_FIRMWARE", "ALL", None, None)


def task(
    task_id: str = "t1",
    *,
    status: str = "QUEUED",
    module: str = "default",
    src: str | None = None,
    dest: str | None = "3.0",
    firmware_id: str | None = "fw1",
    job_id: str | None = "j1",
    age_s: int | None = 60,
) -> Task:
    modified = None if age_s is None else NOW - age_s * 1000
    return Task(
        task_id,
        job_id,
        firmware_id,
        "pk",
        None,
        "dev-1",
        "iot-1",
        module,
        src,
        dest,
        status,
        modified,
        modified,
    )


FIRMWARE = {"fw1": firmware("fw1"), "fw-target": firmware("fw-target", dest="3.0")}
JOBS = {("fw1", "j1"): job("j1", "IN_PROGRESS")}


def findings_of(
    kind: str,
    modules: Mapping[str, str],
    tasks: Sequence[Task] = (),
    *,
    firmware_map: Mapping[str, Firmware] = FIRMWARE,
    jobs: Mapping[tuple[str, str], Job] = JOBS,
    policy: Policy = POLICY,
) -> list[Finding]:
    """The findings of one type for DEVICE reporting `modules` (module -> version)."""
    rows = [ModuleVersion("pk", "dev-1", None, m, v) for m, v in modules.items()]
    found = device_findings(
        DEVICE,
        rows,
        tasks,
        expected=expected_versions(policy, firmware_map),
        firmware=firmware_map,
        jobs=jobs,
        policy=policy,
        now_ms=NOW,
    )
    return [f for f in found if f.finding_type == kind]


def test_expected_versions_literal_and_firmware() -> None:
    """Targets give their literal version or their firmware's destination version."""
    assert expected_versions(POLICY, FIRMWARE) == {("pk", "default"): "3.0", ("pk", "ble"): "2.4.1"}


def test_expected_versions_skip_failed_firmware_lookup() -> None:
    """A firmware target whose lookup failed has no expected version, but is still targeted."""
    assert expected_versions(POLICY, {}) == {("pk", "ble"): "2.4.1"}
    assert targeted_modules(POLICY) == {("pk", "default"), ("pk", "ble")}


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        ({"default": "3.0", "ble": "2.4.1"}, []),
        ({"default": "2.9", "ble": "2.4.1"}, [("default", "2.9", "3.0", "fw-target")]),
        ({"default": "3.0", "ble": "2.4.0"}, [("ble", "2.4.0", "2.4.1", None)]),
        ({"default": "3.0", "ble": "2.4.1", "wifi": "1.0"}, []),  # untargeted: no policy drift
        ({"": "2.0", "ble": "2.4.1"}, [("default", "2.0", "3.0", "fw-target")]),
    ],
    ids=["on-target", "firmware-target", "literal-target", "untargeted", "empty-module-name"],
)
def test_version_drift_against_targets(
    modules: dict[str, str], expected: list[tuple[str, str, str, str | None]]
) -> None:
    """A reported module differing from its target is a warning naming the target."""
    found = findings_of("version_drift", modules)
    assert [
        (f.module_name, f.observed_version, f.expected_version, f.firmware_id) for f in found
    ] == expected
    assert all(f.severity == "warning" for f in found)


def test_version_drift_detail_names_firmware_target() -> None:
    """The detail of a firmware target's drift names the firmware and its version."""
    (found,) = findings_of("version_drift", {"default": "2.9", "ble": "2.4.1"})
    assert found.detail == (
        "Module default runs 2.9, but the policy target is firmware fw-target (version 3.0)."
    )


def test_version_drift_skipped_when_firmware_lookup_failed() -> None:
    """Without the target firmware there is no expected version, so no drift."""
    assert findings_of("version_drift", {"default": "2.9"}, firmware_map={}) == []


@pytest.mark.parametrize(
    ("modules", "missing"),
    [
        ({"default": "3.0", "ble": "2.4.1"}, []),
        ({"default": "3.0"}, ["ble"]),
        ({}, ["default", "ble"]),
        ({"": "3.0", "ble": "2.4.1"}, []),
    ],
)
def test_module_missing(modules: dict[str, str], missing: list[str]) -> None:
    """A targeted module the device does not report is a warning."""
    found = findings_of("module_missing", modules)
    assert [f.module_name for f in found] == missing
    assert all(f.severity == "warning" and f.observed_version is None for f in found)


def test_module_missing_ignores_other_products() -> None:
    """Targets of another product never make module_missing for this device."""
    policy = Policy(targets=(Target("other", "ble", version="1"),))
    assert findings_of("module_missing", {"default": "3.0"}, policy=policy) == []


@pytest.mark.parametrize(
    ("tasks", "stalled"),
    [
        ([task(status="QUEUED", age_s=25 * HOUR)], ["t1"]),
        ([task(status="QUEUED", age_s=24 * HOUR)], []),  # exactly at the limit: not older
        ([task(status="CONFIRM", age_s=6 * 24 * HOUR)], []),
        ([task(status="CONFIRM", age_s=8 * 24 * HOUR)], ["t1"]),
        ([task(status="IN_PROGRESS", age_s=7 * HOUR)], ["t1"]),
        ([task(status="NOTIFIED", age_s=HOUR)], []),
        ([task(status="SUCCEEDED", age_s=90 * 24 * HOUR)], []),
        ([task(status="FAILED", age_s=90 * 24 * HOUR)], []),
        ([task(status="QUEUED", age_s=None)], []),
        ([task(status="QUEUED", age_s=-HOUR)], []),  # modified in the future: clock skew
    ],
)
def test_stalled_task(tasks: list[Task], stalled: list[str]) -> None:
    """An unfinished task older than its status limit is stalled; terminal ones never are."""
    found = findings_of("stalled_task", {"default": "2.0"}, tasks)
    assert [f.task_id for f in found] == stalled


def test_stalled_task_columns_and_detail() -> None:
    """A stalled task finding carries the task's columns, its age and a readable detail."""
    (found,) = findings_of(
        "stalled_task", {"default": "2.0"}, [task(age_s=3 * 24 * HOUR + 4 * HOUR + 5)]
    )
    assert found == Finding(
        finding_type=FindingType.STALLED_TASK,
        severity=Severity.WARNING,
        product_key="pk",
        device_name="dev-1",
        iot_id="iot-1",
        module_name="default",
        observed_version="2.0",
        expected_version="3.0",
        task_id="t1",
        task_status="QUEUED",
        firmware_id="fw1",
        job_id="j1",
        age_seconds=3 * 24 * HOUR + 4 * HOUR + 5,
        detail="Task t1 has been QUEUED for 3d 4h (limit 24h).",
    )


@pytest.mark.parametrize(
    ("modules", "tasks", "mismatched"),
    [
        ({"default": "2.0"}, [task(src="2.0", dest="3.0")], []),
        ({"default": "1.0"}, [task(src="2.0", dest="3.0")], ["t1"]),
        ({"default": "3.0"}, [task(src="2.0", dest="3.0")], []),  # already at dest
        ({"default": "1.0"}, [task(src=None, dest="3.0")], []),  # full package
        ({"default": "1.0"}, [task(src="", dest="3.0")], []),
        ({"ble": "1.0"}, [task(src="2.0", dest="3.0")], ["t1"]),  # module not reported
        ({"default": "1.0"}, [task(status="CANCELED", src="2.0")], []),
        ({"ble": "1.0"}, [task(module="ble", src="1.0")], []),
    ],
)
def test_task_src_mismatch(
    modules: dict[str, str], tasks: list[Task], mismatched: list[str]
) -> None:
    """A delta task whose source is not the device's version (nor at dest) is critical."""
    found = findings_of("task_src_mismatch", modules, tasks)
    assert [f.task_id for f in found] == mismatched
    assert all(f.severity == "critical" for f in found)


@pytest.mark.parametrize(
    ("modules", "tasks", "applied"),
    [
        ({"default": "3.0"}, [task(dest="3.0")], ["t1"]),
        ({"default": "2.0"}, [task(dest="3.0")], []),
        ({"default": "3.0"}, [task(dest=None)], []),
        ({"default": "3.0"}, [task(status="SUCCEEDED", dest="3.0")], []),
        ({"default": "3.0"}, [task(module="ble", dest="3.0")], []),
    ],
)
def test_task_already_applied(
    modules: dict[str, str], tasks: list[Task], applied: list[str]
) -> None:
    """An unfinished task whose destination the device already runs is info."""
    found = findings_of("task_already_applied", modules, tasks)
    assert [f.task_id for f in found] == applied
    assert all(f.severity == "info" for f in found)


@pytest.mark.parametrize(
    ("job_status", "tasks", "orphans"),
    [
        ("COMPLETED", [task()], ["t1"]),
        ("CANCELED", [task()], ["t1"]),
        ("IN_PROGRESS", [task()], []),
        ("PLANNED", [task()], []),
        ("COMPLETED", [task(status="CANCELED")], []),
        ("COMPLETED", [task(job_id="j-unknown")], []),  # job lookup failed
        ("COMPLETED", [task(job_id=None)], []),
    ],
)
def test_orphan_task(job_status: str, tasks: list[Task], orphans: list[str]) -> None:
    """An unfinished task whose job has ended is a warning; a missing job skips the rule."""
    jobs = {("fw1", "j1"): job("j1", job_status)}
    found = findings_of("orphan_task", {"default": "2.0"}, tasks, jobs=jobs)
    assert [f.task_id for f in found] == orphans
    assert all(f.severity == "warning" for f in found)


@pytest.mark.parametrize(
    ("status", "tasks", "severities"),
    [
        (0, [task()], ["warning"]),
        (3, [task()], ["critical"]),
        (1, [task()], []),
        (-1, [task()], []),
        (2, [task()], []),
        (None, [task()], []),
        (3, [task(status="FAILED")], []),
        (3, [task(firmware_id="fw-unknown")], []),  # firmware lookup failed
    ],
)
def test_firmware_unverified(status: int | None, tasks: list[Task], severities: list[str]) -> None:
    """A task's firmware not verified is a warning, failed verification critical."""
    firmware_map = {"fw1": firmware("fw1", status=status)}
    found = findings_of("firmware_unverified", {"default": "2.0"}, tasks, firmware_map=firmware_map)
    assert [f.severity for f in found] == severities


@pytest.mark.parametrize(
    ("tasks", "duplicates"),
    [
        ([task("t1"), task("t2")], ["t1", "t2"]),
        ([task("t1"), task("t2", module="")], ["t1", "t2"]),  # empty module name is default
        ([task("t1"), task("t2", module="ble")], []),
        ([task("t1"), task("t2", status="SUCCEEDED")], []),
        ([task("t1")], []),
        ([task("t1"), task("t2", status="CONFIRM"), task("t3", module="ble")], ["t1", "t2"]),
    ],
)
def test_duplicate_tasks(tasks: list[Task], duplicates: list[str]) -> None:
    """More than one unfinished task for a module gives one warning row per task."""
    found = findings_of("duplicate_tasks", {"default": "2.0"}, tasks)
    assert [f.task_id for f in found] == duplicates
    assert all(f.severity == "warning" for f in found)


def test_terminal_tasks_never_make_findings() -> None:
    """Terminal tasks produce no finding of any kind, however odd they look."""
    terminal = [
        task(f"t-{s}", status=s, src="0.1", dest="3.0", age_s=99 * 24 * HOUR)
        for s in ("SUCCEEDED", "FAILED", "CANCELED")
    ]
    firmware_map = {"fw1": firmware("fw1", status=3)}
    jobs = {("fw1", "j1"): job("j1", "COMPLETED")}
    found = device_findings(
        DEVICE,
        [ModuleVersion("pk", "dev-1", None, "default", "3.0")],
        terminal,
        expected={},
        firmware=firmware_map,
        jobs=jobs,
        policy=Policy(),
        now_ms=NOW,
    )
    assert found == []


def test_device_iot_id_comes_from_the_api_when_the_list_has_none() -> None:
    """Findings carry the iot_id the API reported when the device list had none."""
    rows = [ModuleVersion("pk", "dev-1", "iot-9", "default", "2.0")]
    found = device_findings(
        DEVICE,
        rows,
        [],
        expected={("pk", "default"): "3.0"},
        firmware={},
        jobs={},
        policy=POLICY,
        now_ms=NOW,
    )
    assert {f.iot_id for f in found} == {"iot-9"}


def test_device_not_found_finding() -> None:
    """A device the platform does not know is a warning naming it."""
    found = device_not_found_finding(Device("pk", "ghost", "iot-x"))
    assert (found.finding_type, found.severity, found.device_name, found.iot_id) == (
        "device_not_found",
        "warning",
        "ghost",
        "iot-x",
    )
    assert "ghost" in found.detail


def counts_of(versions: Sequence[str], module: str = "wifi") -> VersionCounts:
    counts = VersionCounts()
    for version in versions:
        counts.add("pk", module, version)
    return counts


@pytest.mark.parametrize(
    ("versions", "majority"),
    [
        (["1.0", "1.0", "2.0"], "1.0"),
        (["1.0", "2.0", "1.10", "1.9"], "2.0"),  # all tied: highest
        (["1.9", "1.10", "1.9", "1.10"], "1.10"),  # tie: natural, not lexical
        (["1.0"], "1.0"),
    ],
)
def test_majority_most_common_then_highest(versions: list[str], majority: str) -> None:
    """The majority is the most common version; ties go to the highest by natural order."""
    assert counts_of(versions).majority("pk", "wifi") == majority


def test_majority_unseen_is_none() -> None:
    """A (product, module) never counted has no majority."""
    assert VersionCounts().majority("pk", "wifi") is None


def test_majority_drift_for_untargeted_modules() -> None:
    """Rows differing from the fleet majority are info findings saying 'fleet majority'."""
    versions = ["1.0", "1.0", "1.0", "0.9"]
    rows = [ModuleVersion("pk", f"d{i}", None, "wifi", v) for i, v in enumerate(versions)]
    (found,) = majority_drift_findings(rows, counts_of(versions), targeted_modules(POLICY))
    assert (found.finding_type, found.severity, found.device_name) == (
        "version_drift",
        "info",
        "d3",
    )
    assert (found.observed_version, found.expected_version) == ("0.9", "1.0")
    assert "fleet majority" in found.detail
    assert "3 of 4 devices" in found.detail


def test_majority_drift_skips_targeted_modules() -> None:
    """Targeted (product, module) pairs are left to the policy rule."""
    versions = ["2.4.1", "2.4.1", "2.4.0"]
    rows = [ModuleVersion("pk", f"d{i}", None, "ble", v) for i, v in enumerate(versions)]
    found = majority_drift_findings(rows, counts_of(versions, "ble"), targeted_modules(POLICY))
    assert list(found) == []


def test_majority_drift_empty_module_name_is_default() -> None:
    """Rows without a module name count and compare as the 'default' module."""
    counts = counts_of(["1.0", "1.0"], module="")
    rows = [ModuleVersion("pk", "d9", None, "", "0.5")]
    (found,) = majority_drift_findings(rows, counts, targeted=())
    assert (found.module_name, found.expected_version) == ("default", "1.0")
