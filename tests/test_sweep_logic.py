"""Pure parts of the sweep: disagreements, task-only rules, richer details, settings checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetaudit.audit.crosscheck import task_disagreements
from fleetaudit.audit.findings import device_findings, task_context
from fleetaudit.config import settings_from
from fleetaudit.errors import UsageError
from fleetaudit.models import Device, Job, ModuleVersion, Task
from fleetaudit.policy import Policy, Target
from fleetaudit.sweep import Sweep
from fleetaudit.terms import Disagreement

NOW = 1_732_009_663_000
HOUR_MS = 3_600_000
DEVICE = Device("pk", "d1", "iot-d1")


def task(task_id: str, status: str = "QUEUED", **changes: object) -> Task:
    """An unfinished task of d1, one hour old, in job J of firmware F, module default."""
    values: dict[str, object] = {
        "task_id": task_id, "job_id": "J", "firmware_id": "F", "product_key": "pk",
        "product_name": None, "device_name": "d1", "iot_id": "iot-d1", "module_name": "default",
        "src_version": "0.9", "dest_version": "1.1", "task_status": status,
        "utc_create": NOW - HOUR_MS, "utc_modified": NOW - HOUR_MS, **changes,
    }  # fmt: skip
    return Task(**values)  # type: ignore[arg-type]


def test_disagreements_of_every_kind() -> None:
    """A task in one listing only, or in another status, is a row; an agreed task is not."""
    rows = task_disagreements(
        DEVICE,
        [task("A"), task("B"), task("C", "NOTIFIED")],
        [task("A"), task("C", "IN_PROGRESS"), task("D")],
    )
    assert [(r.task_id, r.kind, r.status_by_device, r.status_by_job) for r in rows] == [
        ("B", Disagreement.ONLY_BY_DEVICE, "QUEUED", None),
        ("C", Disagreement.STATUS_DIFFERS, "NOTIFIED", "IN_PROGRESS"),
        ("D", Disagreement.ONLY_BY_JOB, None, "QUEUED"),
    ]


def test_tasks_only_findings_skip_the_rules_that_need_versions() -> None:
    """Without module versions: no drift, missing module, source mismatch or already applied."""
    policy = Policy(targets=(Target("pk", "default", version="2.0"),))
    tasks = [task("A", utc_modified=NOW - 48 * HOUR_MS), task("B")]
    jobs = {("F", "J"): Job("J", "F", "pk", "COMPLETED", None, None, None, None)}
    kinds = {
        f.finding_type
        for f in device_findings(
            DEVICE,
            (),
            tasks,
            expected={("pk", "default"): "2.0"},
            firmware={},
            jobs=jobs,
            policy=policy,
            now_ms=NOW,
            modules_listed=False,
        )
    }
    assert kinds == {"stalled_task", "orphan_task", "duplicate_tasks"}
    full = {
        f.finding_type
        for f in device_findings(
            DEVICE,
            [ModuleVersion("pk", "d1", None, "default", "1.0")],
            tasks,
            expected={("pk", "default"): "2.0"},
            firmware={},
            jobs=jobs,
            policy=policy,
            now_ms=NOW,
        )
    }
    assert full == kinds | {"version_drift", "task_src_mismatch"}


@pytest.mark.parametrize(
    ("changes", "age_s", "said"),
    [
        ({}, 7 * 3600, ""),
        ({"progress": 40}, 7 * 3600, " It is at 40%."),
        ({"progress": 40, "job_timeout_minutes": 60}, 7 * 3600,
         " It is at 40%, 7 times its job's 1h timeout."),
        ({"progress": 40, "job_timeout_minutes": 300}, 7 * 3600,
         " It is at 40%, past its job's 5h timeout."),
        ({"progress": 5, "task_desc": "device offline"}, 3600,
         " It is at 5%. The platform says: device offline"),
    ],
)  # fmt: skip
def test_in_progress_task_context(changes: dict[str, object], age_s: int, said: str) -> None:
    """An IN_PROGRESS task's detail says its progress and how far past its job's timeout."""
    assert task_context(task("A", "IN_PROGRESS", **changes), age_s) == said


def test_queued_tasks_never_count_as_past_the_timeout() -> None:
    """The platform's timeout starts at the first progress report: a QUEUED task is not past it."""
    assert task_context(task("A", "QUEUED", job_timeout_minutes=1, progress=0), 86_400) == ""


def _job_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(
        'endpoint = "http://127.0.0.1:1/"\ndevices = "d.csv"\n' + body, encoding="utf-8"
    )
    return path


def test_audit_without_tasks_is_refused(tmp_path: Path) -> None:
    """`audit = ["modules"]` is a usage error naming the file and the setting."""
    with pytest.raises(UsageError, match=r"job\.toml: audit: must include tasks"):
        settings_from(_job_file(tmp_path, 'audit = ["modules"]\n'))


def test_tasks_only_refuses_a_drift_gate(tmp_path: Path) -> None:
    """A tasks-only audit with a drift rule in its gate is refused before any call."""
    body = 'audit = ["tasks"]\n[gate]\nmax_drift_percent = 2.0\n'
    with pytest.raises(UsageError, match=r"gate\.max_drift_percent"):
        settings_from(_job_file(tmp_path, body))


def test_tasks_from_and_audit_are_read(tmp_path: Path) -> None:
    """The job file's tasks_from and audit reach the settings; a bad value names the key."""
    settings = settings_from(_job_file(tmp_path, 'tasks_from = "jobs"\naudit = "tasks"\n'))
    assert (settings.tasks_from, settings.audit, settings.tasks_only) == ("jobs", ("tasks",), True)
    with pytest.raises(UsageError, match="tasks_from"):
        settings_from(_job_file(tmp_path, 'tasks_from = "job"\n'))


def test_a_task_seen_in_two_status_listings_is_kept_once() -> None:
    """A task that moved from QUEUED to NOTIFIED between its job's listings is one task, as
    last modified, not a duplicate_tasks finding."""
    sweep = Sweep(products=frozenset({"pk"}), covered=frozenset({"pk"}))
    sweep.add("pk", task("t1", "QUEUED", utc_modified=1_000))
    sweep.add("pk", task("t1", "NOTIFIED", utc_modified=2_000))
    sweep.add("pk", task("t2", "QUEUED", utc_modified=1_500))
    kept = sweep.tasks_of(Device("pk", "d1"))
    assert kept is not None
    assert sorted((t.task_id, t.task_status) for t in kept) == [
        ("t1", "NOTIFIED"),
        ("t2", "QUEUED"),
    ]
    assert sweep.task_count == 2
