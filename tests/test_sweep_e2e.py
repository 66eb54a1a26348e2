"""The sweep end to end against the emulator: `devices`, `jobs` and `both` find the same.

A hand-made fleet where every finding type occurs (orphans in completed and cancelled jobs
included) and every task's module is its firmware's, as on the platform. Findings are
compared without their `detail`, which the job listing makes richer (progress, timeout).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from fleetaudit import cli
from fleetaudit.api.protocol import TASK_WINDOW
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.emulator.fleet import StaticFleet
from fleetaudit.report.summary import summarize_run
from fleetaudit.terms import Action

from helpers import FIXED_NOW, UNLIMITED, FleetBuilder, emulator_url, set_env_credentials

KEY_ID = "sweep-key"
SECRET = "sweep-Secret-51c2"
NOW_MS = int(FIXED_NOW * 1000)
NOW_ISO = "2024-11-19T09:47:43Z"
HOUR = 3_600_000
DAY = 24 * HOUR

POLICY_TOML = """\
[[targets]]
product_key = "pkA"
module = "default"
firmware_id = "FA"
"""

# (finding_type, severity, product_key, device_name, module_name, task_id, task_status,
#  firmware_id, job_id): a finding without its detail and versions' wording.
Finding = tuple[Any, ...]
EXPECTED: list[Finding] = [
    ("version_drift", "warning", "pkA", "a-drift", "default", None, None, "FA", None),
    ("module_missing", "warning", "pkA", "a-nomod", "default", None, None, "FA", None),
    ("device_not_found", "warning", "pkA", "a-ghost", None, None, None, None, None),
    ("stalled_task", "warning", "pkB", "b-stalled", "default", "T1", "QUEUED", "G1", "J1"),
    ("stalled_task", "warning", "pkB", "b-slow", "wifi", "T2", "IN_PROGRESS", "GW", "JW"),
    ("task_src_mismatch", "critical", "pkB", "b-srcmm", "default", "T3", "NOTIFIED", "GD", "JD"),
    ("task_already_applied", "info", "pkB", "b-applied", "default", "T4", "QUEUED", "G1", "J1"),
    ("orphan_task", "warning", "pkB", "b-orphan1", "default", "T5", "QUEUED", "G1", "JC"),
    ("orphan_task", "warning", "pkB", "b-orphan2", "default", "T6", "CONFIRM", "G1", "JX"),
    ("firmware_unverified", "warning", "pkB", "b-unver0", "default", "T7", "QUEUED", "G0", "J0"),
    ("firmware_unverified", "critical", "pkB", "b-unver3", "default", "T8", "QUEUED", "G3", "J3"),
    ("duplicate_tasks", "warning", "pkB", "b-dups", "default", "T9", "QUEUED", "G1", "J1"),
    ("duplicate_tasks", "warning", "pkB", "b-dups", "default", "T10", "NOTIFIED", "G1", "J1"),
    ("task_src_mismatch", "critical", "pkA", "a-drift", "default", "T11", "QUEUED", "FA", "JA"),
    ("version_drift", "info", "pkB", "b-applied", "default", None, None, None, None),
]
# Findings that need module versions: a tasks-only audit does not make them.
NEEDS_MODULES = {"version_drift", "module_missing", "task_src_mismatch", "task_already_applied"}


def sweep_fleet(*, big_job_tasks: int = 0) -> StaticFleet:
    """Every finding type; `big_job_tasks` QUEUED tasks in job JBIG of product pkA."""
    fleet = FleetBuilder(product_key="pkB", now_ms=NOW_MS)
    fleet.device("a-ok", {"default": "2.0.0"}, product_key="pkA")
    fleet.device("a-drift", {"default": "1.0.0"}, product_key="pkA")
    fleet.device("a-nomod", {"wifi": "1.0.0"}, product_key="pkA")
    fleet.device("a-task", {"default": "2.0.0"}, product_key="pkA")
    fleet.missing("a-ghost", product_key="pkA")
    for name in ("b-fresh", "b-stalled", "b-srcmm", "b-orphan1", "b-orphan2", "b-unver0",
                 "b-unver3", "b-dups", "b-term"):  # fmt: skip
        fleet.device(name, {"default": "1.0.0", "wifi": "1.0.0"})
    fleet.device("b-slow", {"default": "1.0.0", "wifi": "1.0.0"})
    fleet.device("b-applied", {"default": "1.1.0"})
    tasks = [
        ("T0", "b-fresh", "QUEUED", "G1", "J1", HOUR, "default", ""),
        ("T1", "b-stalled", "QUEUED", "G1", "J1", 2 * DAY, "default", ""),
        ("T2", "b-slow", "IN_PROGRESS", "GW", "JW", 7 * HOUR, "wifi", ""),
        ("T3", "b-srcmm", "NOTIFIED", "GD", "JD", HOUR, "default", "0.9.0"),
        ("T4", "b-applied", "QUEUED", "G1", "J1", HOUR, "default", ""),
        ("T5", "b-orphan1", "QUEUED", "G1", "JC", HOUR, "default", ""),
        ("T6", "b-orphan2", "CONFIRM", "G1", "JX", HOUR, "default", ""),
        ("T7", "b-unver0", "QUEUED", "G0", "J0", HOUR, "default", ""),
        ("T8", "b-unver3", "QUEUED", "G3", "J3", HOUR, "default", ""),
        ("T9", "b-dups", "QUEUED", "G1", "J1", HOUR, "default", ""),
        ("T10", "b-dups", "NOTIFIED", "G1", "J1", 2 * HOUR, "default", ""),
        ("T11", "a-drift", "QUEUED", "FA", "JA", HOUR, "default", "1.5.0"),
        # Terminal tasks: never a finding, and not in any unfinished listing.
        ("T12", "b-term", "SUCCEEDED", "G3", "JC", 30 * DAY, "default", ""),
        ("T13", "b-term", "FAILED", "G0", "JX", 30 * DAY, "default", "0.5.0"),
        ("T14", "b-term", "CANCELED", "G3", "J3", 30 * DAY, "default", ""),
        # A device outside the device list: counted by the sweep, never a finding.
        ("T15", "b-unlisted", "QUEUED", "G1", "J1", 9 * DAY, "default", ""),
    ]
    for task_id, device, status, fw, job, age, module, src in tasks:
        product = "pkA" if device.startswith("a-") else "pkB"
        fleet.task(
            task_id, device, status, job=job, firmware=fw, module=module, src=src,
            dest="2.0.0" if product == "pkA" else "1.1.0", product_key=product,
            created_ms=NOW_MS - age - HOUR, modified_ms=NOW_MS - age,
            progress=35 if status == "IN_PROGRESS" else 0,
            task_desc="Device went offline." if status == "FAILED" else "",
        )  # fmt: skip
    for index in range(big_job_tasks):
        fleet.task(f"BIG{index:06d}", f"a-far{index:06d}", "QUEUED", job="JBIG", firmware="FA",
                   dest="2.0.0", product_key="pkA")  # fmt: skip
    firmware = [("FA", "pkA", "default", 1, "2.0.0"), ("G1", "pkB", "default", 1, "1.1.0"),
                ("GW", "pkB", "wifi", 1, "1.1.0"), ("GD", "pkB", "default", 1, "1.1.0"),
                ("G0", "pkB", "default", 0, "1.1.0"),
                ("G3", "pkB", "default", 3, "1.1.0")]  # fmt: skip
    for fw, product, module, verified, dest in firmware:
        fleet.firmware(fw, product_key=product, module=module, status=int(verified), dest=dest)
    for job, fw, job_status in [("JA", "FA", "IN_PROGRESS"), ("JBIG", "FA", "IN_PROGRESS"),
                            ("J1", "G1", "IN_PROGRESS"), ("JC", "G1", "COMPLETED"),
                            ("JX", "G1", "CANCELED"), ("JW", "GW", "IN_PROGRESS"),
                            ("JD", "GD", "IN_PROGRESS"), ("J0", "G0", "IN_PROGRESS"),
                            ("J3", "G3", "PLANNED")]:  # fmt: skip
        product = "pkA" if fw == "FA" else "pkB"
        timeout = 60 if job == "JW" else None
        fleet.job(job, fw, job_status, product_key=product, timeout_minutes=timeout)
    return fleet.build()


def write_devices(path: Path, fleet: StaticFleet) -> Path:
    """The device list: every device of the fleet (b-unlisted has tasks but no device)."""
    rows = [",".join(row) for row in fleet.iter_device_list()]
    path.write_text("\n".join(["product_key,device_name,iot_id", *rows]) + "\n", encoding="utf-8")
    return path


def run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    name: str,
    *extra: str,
    job: Path | None = None,
) -> Path:
    """One `fleetaudit run` (of `job`, if given) over the sweep fleet; the run directory."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)
    devices = write_devices(tmp_path / "devices.csv", sweep_fleet())
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY_TOML, encoding="utf-8")
    out = tmp_path / name
    argv = ["run", *([str(job)] if job else []), "--endpoint", url, "--devices", str(devices),
            "--policy", str(policy), "--out", str(out), "--now", NOW_ISO, "--qps", "1000",
            "--concurrency", "8", "--retry-attempts", "2", *extra]  # fmt: skip
    assert cli.main(argv) == 0
    return out / (out / "LATEST").read_text(encoding="utf-8").strip()


def findings(run_dir: Path) -> list[Finding]:
    """The run's findings without their detail, sorted."""
    rows = pq.read_table(run_dir / "findings.parquet").to_pylist()
    keys = ("finding_type", "severity", "product_key", "device_name", "module_name", "task_id",
            "task_status", "firmware_id", "job_id")  # fmt: skip
    return sorted((tuple(row[k] for k in keys) for row in rows), key=repr)


def manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest.json."""
    loaded: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return loaded


def sources(run_dir: Path) -> Counter[str | None]:
    """Devices per tasks_source."""
    return Counter(pq.read_table(run_dir / "devices.parquet").column("tasks_source").to_pylist())


@pytest.mark.parametrize("casing", ["tuya", "alibaba"])
def test_devices_jobs_and_both_find_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, casing: str
) -> None:
    """Each way of reading tasks gives exactly the expected findings, in both casings."""
    expected = sorted(EXPECTED, key=repr)
    with emulator_url(
        sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED, casing=casing
    ) as (url, app):
        for tasks_from in ("devices", "jobs", "both"):
            run_dir = run(tmp_path, monkeypatch, url, tasks_from, "--tasks-from", tasks_from)
            assert findings(run_dir) == expected, tasks_from
            assert not pq.read_table(run_dir / "task_disagreements.parquet").num_rows
        served = app[STATS_KEY].served
    # The jobs run read no task per device; the both run read every device's.
    assert served[Action.LIST_UNFINISHED_TASKS] == 2 * 16
    record = manifest(run_dir)["tasks"]
    assert record["devices_by_source"] == {"both": 15, "not_read": 1}  # a-ghost: not found
    assert record["sweep"]["tasks_outside_device_list"] == 1
    assert record["sweep"]["products_covered"] == 2


def test_jobs_rows_carry_progress_and_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks read by job (or both ways) carry progress; those read per device only do not."""
    with emulator_url(sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, _):
        by_job = run(tmp_path, monkeypatch, url, "jobs", "--tasks-from", "jobs")
        by_device = run(tmp_path, monkeypatch, url, "devices")
        both = run(tmp_path, monkeypatch, url, "both", "--tasks-from", "both")
    job_rows = {r["task_id"]: r for r in pq.read_table(by_job / "tasks.parquet").to_pylist()}
    assert (job_rows["T2"]["progress"], job_rows["T2"]["job_timeout_minutes"]) == (35, 60)
    assert (job_rows["T1"]["progress"], job_rows["T1"]["job_timeout_minutes"]) == (0, None)
    details = {
        r["task_id"]: r["detail"] for r in pq.read_table(by_job / "findings.parquet").to_pylist()
    }
    assert details["T2"].endswith("It is at 35%, 7 times its job's 1h timeout.")
    both_rows = {r["task_id"]: r for r in pq.read_table(both / "tasks.parquet").to_pylist()}
    assert both_rows == job_rows
    assert all(
        r["progress"] is None for r in pq.read_table(by_device / "tasks.parquet").to_pylist()
    )
    assert sources(by_job)[None] == 1  # a-ghost: its module call said it does not exist


def test_tasks_only_makes_no_module_version_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tasks-only sweep calls no per-device action and finds every task-only finding."""
    with emulator_url(sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        run_dir = run(
            tmp_path, monkeypatch, url, "tasks", "--tasks-from", "jobs", "--audit", "tasks"
        )
        served = app[STATS_KEY].served
    assert served[Action.LIST_MODULE_VERSIONS] == 0
    assert served[Action.LIST_UNFINISHED_TASKS] == 0
    assert served[Action.QUERY_FIRMWARE] == 0
    assert served[Action.LIST_JOBS] == 0
    wanted = [f for f in EXPECTED if f[0] not in NEEDS_MODULES | {"device_not_found"}]
    assert findings(run_dir) == sorted(wanted, key=repr)
    assert pq.read_table(run_dir / "devices.parquet").column("module_count").null_count == 16


def test_tasks_only_per_device_calls_no_module_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--audit tasks` with the per-device listing makes one task call per device, no more."""
    with emulator_url(sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        run_dir = run(tmp_path, monkeypatch, url, "tasks", "--audit", "tasks")
        served = app[STATS_KEY].served
    assert served[Action.LIST_MODULE_VERSIONS] == 0
    assert served[Action.LIST_UNFINISHED_TASKS] == 16
    assert {f[0] for f in findings(run_dir)} == {
        "stalled_task", "orphan_task", "firmware_unverified", "duplicate_tasks", "device_not_found"
    }  # fmt: skip


def test_a_failing_listing_falls_back_with_nothing_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job listing that keeps failing is an error row, and its product is read per device."""
    plan = FaultPlan(failing_listings={"JC": "iot.ota.ListingBroken"})
    with emulator_url(
        sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED, faults=plan
    ) as (url, _):
        run_dir = run(tmp_path, monkeypatch, url, "jobs", "--tasks-from", "jobs")
    assert findings(run_dir) == sorted(EXPECTED, key=repr)
    errors = pq.read_table(run_dir / "errors.parquet").to_pylist()
    assert {(e["action"], e["job_id"]) for e in errors} == {(Action.LIST_TASKS_BY_JOB, "JC")}
    by_source = manifest(run_dir)["tasks"]["devices_by_source"]
    assert by_source == {"device": 11, "job": 4, "not_read": 1}  # pkB per device
    assert manifest(run_dir)["tasks"]["sweep"]["products_covered"] == 1
    summary = summarize_run(run_dir)
    assert "Tasks from jobs: devices 11 by device, 4 by job, 1 not read" in summary
    assert "1 of 2 products read completely" in summary
    assert "4 failed listing(s), 0 job(s) past the window" in summary  # JC in 4 statuses


def test_a_job_past_the_window_falls_back_with_nothing_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job with more unfinished tasks than the window shows sends its product per device."""
    fleet = sweep_fleet(big_job_tasks=TASK_WINDOW + 1)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        run_dir = run(tmp_path, monkeypatch, url, "jobs", "--tasks-from", "jobs")
        served = app[STATS_KEY].served
    assert findings(run_dir) == sorted(EXPECTED, key=repr)
    record = manifest(run_dir)["tasks"]
    assert record["sweep"]["jobs_past_window"] == ["JBIG"]
    assert record["devices_by_source"] == {"device": 4, "job": 11, "not_read": 1}
    # Seeing the window passed took one page, not a thousand.
    assert served[Action.LIST_TASKS_BY_JOB] == 4 * 9


def test_both_records_a_planted_disagreement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`both` keeps the per-device findings and lists each task the listings disagree on."""
    plan = FaultPlan(job_listing_skew={"T1": None, "T9": "IN_PROGRESS"})
    with emulator_url(
        sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED, faults=plan
    ) as (url, _):
        run_dir = run(tmp_path, monkeypatch, url, "both", "--tasks-from", "both")
    assert findings(run_dir) == sorted(EXPECTED, key=repr)
    rows = pq.read_table(run_dir / "task_disagreements.parquet").to_pylist()
    assert [(r["task_id"], r["kind"], r["status_by_device"], r["status_by_job"]) for r in rows] == [
        ("T1", "only_by_device", "QUEUED", None),
        ("T9", "status_differs", "QUEUED", "IN_PROGRESS"),
    ]
    assert manifest(run_dir)["tasks"]["disagreements"] == 2


def test_the_sweep_rides_out_random_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gateway errors, dropped connections and truncated answers on every action are retried:
    the sweep still covers every product and finds exactly the same."""
    plan = FaultPlan(seed=5, error_rate=0.1, drop_rate=0.05, truncated_rate=0.05)
    job = tmp_path / "fast-retries.toml"
    job.write_text("retry_wait_initial = 0.001\nretry_wait_max = 0.01\n", encoding="utf-8")
    with emulator_url(
        sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED, faults=plan
    ) as (url, app):
        run_dir = run(
            tmp_path, monkeypatch, url, "faults", "--tasks-from", "jobs", "--retry-attempts",
            "10", job=job,
        )  # fmt: skip
        faults = sum(app[STATS_KEY].faults.values())
    assert faults > 10
    assert findings(run_dir) == sorted(EXPECTED, key=repr)
    assert manifest(run_dir)["tasks"]["sweep"]["products_covered"] == 2
    assert not pq.read_table(run_dir / "errors.parquet").num_rows


def test_a_tasks_only_gate_trips_on_an_unfinished_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pre-rollout rule by the jobs' listings alone: a product with unfinished tasks
    trips the gate (exit 1) without a single per-device call."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)
    devices = write_devices(tmp_path / "devices.csv", sweep_fleet())
    job = tmp_path / "pre-rollout-tasks.toml"
    job.write_text(
        'tasks_from = "jobs"\naudit = ["tasks"]\n[gate]\nproduct_key = "pkB"\n'
        "fail_on_unfinished_tasks = true\n",
        encoding="utf-8",
    )
    with emulator_url(sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        argv = ["run", str(job), "--endpoint", url, "--devices", str(devices), "--out",
                str(tmp_path / "out"), "--now", NOW_ISO, "--qps", "1000"]  # fmt: skip
        assert cli.main(argv) == 1
        served = app[STATS_KEY].served
    assert served[Action.LIST_UNFINISHED_TASKS] == served[Action.LIST_MODULE_VERSIONS] == 0
    assert "fail_on_unfinished_tasks" in capsys.readouterr().out
