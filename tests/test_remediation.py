"""`fleetaudit cancel`: the pure plan, re-check and outcomes, and the command end to end."""

from __future__ import annotations

import ast
import io
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetaudit import remediation
from fleetaudit.api.protocol import MAX_CANCEL_DEVICES
from fleetaudit.cli import main
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.errors import AuthError, UsageError
from fleetaudit.models import CallFailure, Credentials, Task
from fleetaudit.remediation.apply import cancel_command
from fleetaudit.remediation.files import (
    manifest_endpoint,
    read_findings,
    rebuild_outcomes,
    write_plan,
)
from fleetaudit.remediation.plan import (
    Batch,
    CancelCall,
    PlannedTask,
    TaskOutcome,
    build_plan,
    classify,
    exit_code,
    group_calls,
    recheck,
    select_tasks,
    validate_finding_types,
)
from fleetaudit.remediation.render import format_plan, format_table
from fleetaudit.report.schema import REMEDIATION_TABLES
from fleetaudit.terms import UNFINISHED_STATUSES, Action

from cancel_helpers import (
    FAST,
    NOW_MS,
    audit_findings,
    cancel,
    emulator,
    finding,
    make_fleet,
    make_run_dir,
    outcomes_of,
    platform,
    stale_task,
    statuses,
)
from helpers import TEST_KEY_ID, TEST_SECRET

ALL_UNFINISHED = tuple(UNFINISHED_STATUSES)
BATCH = Batch("20250101T000000Z-abcdef", 1_735_689_600_000)


def planned(device: str = "dev-1", task_id: str = "t-1", **kwargs: Any) -> PlannedTask:
    """One planned task built the way build_plan builds it."""
    return build_plan([finding(device, task_id, **kwargs)]).tasks[0]


def task(
    device: str = "dev-1",
    task_id: str = "t-1",
    status: str = "QUEUED",
    *,
    firmware_id: str = "fw1",
    job_id: str = "job1",
) -> Task:
    """A task as the client parses it from ListOTAUnfinishedTaskByDevice."""
    return Task(
        task_id=task_id,
        job_id=job_id,
        firmware_id=firmware_id,
        product_key="pk1",
        product_name=None,
        device_name=device,
        iot_id=f"iot-{device}",
        module_name="default",
        src_version=None,
        dest_version="2.0",
        task_status=status,
        utc_create=0,
        utc_modified=0,
    )


def failure(code: str = "iot.device.NotExistedDevice") -> CallFailure:
    """A call that failed for good."""
    return CallFailure(
        Action.CANCEL_TASKS, "pk1", "dev-1", None, None, code, "no such device", 200, 1, "req-9"
    )


# --- plan ---------------------------------------------------------------------------------


def test_default_types_select_only_task_findings_to_cancel() -> None:
    """By default only stalled, orphan and already-applied findings are planned."""
    rows = [
        finding("a", "t-a", finding_type="stalled_task"),
        finding("b", "t-b", finding_type="orphan_task"),
        finding("c", "t-c", finding_type="task_already_applied"),
        finding("d", "t-d", finding_type="task_src_mismatch"),
        finding("e", None, finding_type="version_drift"),  # type: ignore[arg-type]
    ]
    tasks, _ = select_tasks(rows)
    assert [t.task_id for t in tasks] == ["t-a", "t-b", "t-c"]


def test_task_named_by_several_findings_is_planned_once_with_every_reason() -> None:
    """A task both stalled and orphaned is cancelled once and keeps both reasons."""
    rows = [finding(finding_type="stalled_task"), finding(finding_type="orphan_task")]
    tasks, _ = select_tasks(rows)
    assert [(t.task_id, t.finding_type) for t in tasks] == [("t-1", "stalled_task,orphan_task")]


def test_findings_without_a_firmware_id_are_skipped_and_counted() -> None:
    """A task without a firmware id cannot be named in a cancel call, so it is skipped."""
    plan = build_plan([finding(firmware_id=None), finding("dev-2", "t-2")])
    assert ([t.task_id for t in plan.tasks], plan.skipped) == (["t-2"], 1)


def test_device_list_restricts_the_plan() -> None:
    """Only devices in the given device list are planned."""
    plan = build_plan([finding("a", "t-a"), finding("b", "t-b")], devices={("pk1", "b")})
    assert [t.device_name for t in plan.tasks] == ["b"]


def test_unknown_finding_type_is_refused() -> None:
    """A finding type that names no task cannot be planned."""
    with pytest.raises(ValueError, match="version_drift"):
        validate_finding_types(["stalled_task", "version_drift"])


def test_group_splits_at_200_unique_devices() -> None:
    """450 devices of one (product, firmware, job) make calls of 200, 200 and 50."""
    tasks = [planned(f"dev-{i:03}", f"t-{i}") for i in range(450)]
    assert [len(c.device_names) for c in group_calls(tasks)] == [200, 200, 50]


def test_group_names_a_device_once_per_call() -> None:
    """Two tasks of one device in the same group put its name in the call once."""
    calls = group_calls([planned("dev-1", "t-1"), planned("dev-1", "t-2")])
    assert calls == [CancelCall("pk1", "fw1", "job1", ("dev-1",))]


def test_group_keeps_jobs_apart_and_job_none_unscoped() -> None:
    """Each (product, firmware, job) is its own call; a task without job sends no JobId."""
    calls = group_calls(
        [planned("a", "t-a", job_id="j2"), planned("b", "t-b", job_id=None), planned("c", "t-c")]
    )
    assert [(c.job_id, c.device_names) for c in calls] == [
        (None, ("b",)),
        ("j2", ("a",)),
        ("job1", ("c",)),
    ]


def test_plan_tasks_point_at_the_call_that_names_them() -> None:
    """Each planned task's call_index is the call holding its device and group."""
    plan = build_plan([finding(f"d{i:03}", f"t{i}", firmware_id=f"fw{i % 2}") for i in range(300)])
    for t in plan.tasks:
        call = plan.calls[t.call_index]
        assert (call.firmware_id, t.device_name in call.device_names) == (t.firmware_id, True)


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 450), st.sampled_from(["j1", None])),
        max_size=600,
    )
)
def test_calls_cover_every_device_once_within_the_limit(
    rows: list[tuple[str, int, str | None]],
) -> None:
    """For any tasks, every (group, device) is in exactly one call of <= 200 unique names."""
    tasks = [
        planned(f"dev-{n}", f"t-{i}", firmware_id=fw, job_id=job)
        for i, (fw, n, job) in enumerate(rows)
    ]
    calls = group_calls(tasks)
    named = [(c.firmware_id, c.job_id, name) for c in calls for name in c.device_names]
    assert all(len(set(c.device_names)) == len(c.device_names) for c in calls)
    assert all(len(c.device_names) <= MAX_CANCEL_DEVICES for c in calls)
    assert sorted(named, key=str) == sorted(
        {(t.firmware_id, t.job_id, t.device_name) for t in tasks}, key=str
    )


# --- re-check and outcomes -----------------------------------------------------------------


def test_recheck_keeps_a_task_still_unfinished_in_the_same_status() -> None:
    """A task listed as before is still cancelled."""
    keep, settled = recheck([planned()], {("pk1", "dev-1"): [task()]}, BATCH)
    assert ([t.task_id for t in keep], settled) == (["t-1"], [])


def test_recheck_settles_a_task_no_longer_listed_as_already_finished() -> None:
    """A task that finished since the audit is not cancelled: already_finished."""
    keep, settled = recheck([planned()], {("pk1", "dev-1"): []}, BATCH)
    assert (keep, [o.outcome for o in settled]) == ([], ["already_finished"])


def test_recheck_leaves_a_task_whose_status_changed() -> None:
    """A task that moved on since the audit is stale data: left open, not cancelled."""
    keep, settled = recheck([planned()], {("pk1", "dev-1"): [task(status="IN_PROGRESS")]}, BATCH)
    assert keep == []
    assert (settled[0].outcome, settled[0].task_status_before) == ("still_open", "IN_PROGRESS")


def test_recheck_fails_tasks_of_a_device_that_could_not_be_read() -> None:
    """A device whose re-read failed is never cancelled blind: failed with the code."""
    keep, settled = recheck([planned()], {("pk1", "dev-1"): failure()}, BATCH)
    assert (keep, settled[0].outcome) == ([], "failed")
    assert settled[0].error_code == "iot.device.NotExistedDevice"


def test_recheck_refuses_a_call_that_would_cancel_an_unplanned_task() -> None:
    """Without a JobId the call hits every task of the firmware: a fresh one blocks it."""
    current = {("pk1", "dev-1"): [task(), task(task_id="t-new", job_id="job2")]}
    keep, settled = recheck([planned(job_id=None)], current, BATCH)
    assert keep == []
    assert "t-new" in (settled[0].error_message or "")


def test_recheck_allows_an_unplanned_task_of_another_job_when_scoped() -> None:
    """With a JobId the call spares other jobs' tasks, so the planned one is still cancelled."""
    current = {("pk1", "dev-1"): [task(), task(task_id="t-new", job_id="job2")]}
    keep, _ = recheck([planned()], current, BATCH)
    assert [t.task_id for t in keep] == ["t-1"]


@pytest.mark.parametrize(
    ("result", "after", "outcome"),
    [
        ("req-1", [], "cancelled"),
        ("req-1", [task()], "still_open"),
        (failure("iot.system.IllegalRequest"), [], "failed"),
        ("req-1", failure("InternalError"), "failed"),
    ],
)
def test_classify_outcome(result: str | CallFailure, after: Any, outcome: str) -> None:
    """The outcome follows the call's result and the confirming re-read."""
    calls = group_calls([planned()])
    [got] = classify([planned()], calls, [result], {("pk1", "dev-1"): after}, BATCH)
    assert got.outcome == outcome


def test_exit_code_is_zero_only_when_every_task_is_done() -> None:
    """Cancelled and already-finished tasks exit 0; any open or failed one exits 1."""
    calls = group_calls([planned()])
    done = classify([planned()], calls, ["r"], {("pk1", "dev-1"): []}, BATCH)
    open_ = classify([planned()], calls, ["r"], {("pk1", "dev-1"): [task()]}, BATCH)
    assert (exit_code(done), exit_code(done + open_), exit_code([])) == (0, 1, 0)


# --- rendering -----------------------------------------------------------------------------


def test_format_table_aligns_columns() -> None:
    """Every column is as wide as its widest cell."""
    assert format_table(("A", "B"), [("xyz", "1")]).splitlines() == ["A    B", "---  -", "xyz  1"]


def test_plan_text_lists_tasks_calls_and_the_apply_hint() -> None:
    """The printed plan shows each task, each call, and how to apply it."""
    text = format_plan(build_plan([finding("dev-1", "t-1"), finding("dev-2", "t-2")]))
    assert "t-2" in text
    assert "CancelOTATaskByDevice ProductKey=pk1 FirmwareId=fw1 JobId=job1 devices=2" in text
    assert text.splitlines()[-1].endswith("Re-run with --apply to cancel these tasks.")


def test_plan_text_shows_ages_as_durations_and_unknown_as_dash() -> None:
    """A task's age prints as a run's durations do (``25h``); an unknown age as ``-``."""
    text = format_plan(build_plan([finding("dev-1", "t-1"), finding("dev-2", "t-2", age=None)]))
    ages = {
        cells[2]: cells[4] for cells in map(str.split, text.splitlines()) if cells[:1] == ["pk1"]
    }
    assert ages == {"t-1": "25h", "t-2": "-"}


@pytest.mark.parametrize("module", ["plan", "render", "ledger"])
def test_pure_modules_import_no_io(module: str) -> None:
    """The plan, its rendering and the journal's logic stay pure: no aiohttp, anyio, files."""
    source = (Path(remediation.__file__).parent / f"{module}.py").read_text()
    imported = {
        name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
        )
        if name
    }
    assert imported.isdisjoint({"aiohttp", "anyio", "asyncio", "pyarrow", "os", "pathlib"})


# --- run-directory files -------------------------------------------------------------------


def outcome_row(task_id: str, batch: Batch = BATCH) -> TaskOutcome:
    """An outcome row of one batch."""
    calls = group_calls([planned(task_id=task_id)])
    [row] = classify([planned(task_id=task_id)], calls, ["r"], {("pk1", "dev-1"): []}, batch)
    return row


def test_read_findings_of_a_directory_without_findings_is_a_usage_error(tmp_path: Path) -> None:
    """A path that is not a finished run is refused with a usage error."""
    with pytest.raises(UsageError, match=r"findings\.parquet"):
        read_findings(tmp_path)


def test_manifest_endpoint_comes_from_the_run_config(tmp_path: Path) -> None:
    """The endpoint recorded in the manifest's config is the default for cancelling."""
    run = make_run_dir(tmp_path, [], "http://127.0.0.1:9/")
    assert manifest_endpoint(run) == "http://127.0.0.1:9/"


def test_written_plan_has_the_cancel_plan_schema(tmp_path: Path) -> None:
    """cancel-plan.parquet has one row per planned task with its call index."""
    plan = build_plan([finding("a", "t-a"), finding("b", "t-b", firmware_id="fw2")])
    table = pq.read_table(write_plan(tmp_path, plan.tasks))
    assert table.schema.equals(REMEDIATION_TABLES["cancel_plan"])
    assert table.column("call_index").to_pylist() == [0, 1]


def test_rebuilt_outcomes_keep_every_batch_in_order(tmp_path: Path) -> None:
    """remediation.parquet rebuilt from the journal holds each batch, oldest first."""
    second = Batch("20250102T000000Z-000001", BATCH.applied_at + 86_400_000)
    rows = [outcome_row("t-1", second), outcome_row("t-1"), outcome_row("t-2", second)]
    path = rebuild_outcomes(tmp_path, rows)
    table = pq.read_table(path)
    assert table.schema.equals(REMEDIATION_TABLES["remediation"])
    assert table.column("batch_id").to_pylist() == [BATCH.batch_id, *[second.batch_id] * 2]
    assert [p.name for p in tmp_path.iterdir()] == ["remediation.parquet"]


# --- end to end against the emulator -------------------------------------------------------


async def test_dry_run_prints_the_plan_writes_it_and_calls_nothing(tmp_path: Path) -> None:
    """Without --apply the plan is printed and saved, and the platform gets no request."""
    fleet = make_fleet()
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        code, text = await cancel(run, apply=False)
        assert (code, sum(stats.served.values()), sum(stats.rejected.values())) == (0, 0, 0)
    assert "CancelOTATaskByDevice ProductKey=pk1 FirmwareId=fw1 JobId=job1 devices=2" in text
    assert "1 task(s) left out by status (IN_PROGRESS 1)" in text
    assert pq.read_table(run / "cancel-plan.parquet").column("task_id").to_pylist() == [
        "t-1",
        "t-2",
        "t-4",
    ]


async def test_default_apply_plans_only_what_the_platform_cancels_and_exits_0(
    tmp_path: Path,
) -> None:
    """By default an IN_PROGRESS task is not planned (the platform would not cancel it), so
    the apply cancels every planned task and exits 0."""
    fleet = make_fleet()
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        code, text = await cancel(run, apply=True)
        assert (code, stats.cancel_calls) == (0, 2)
    assert TEST_SECRET not in text
    assert outcomes_of(run) == {"t-1": "cancelled", "t-2": "cancelled", "t-4": "cancelled"}
    assert statuses(fleet) == {
        "t-1": "CANCELED",
        "t-2": "CANCELED",
        "t-3": "IN_PROGRESS",
        "t-4": "CANCELED",
        "t-fresh": "QUEUED",
        "t-old": "SUCCEEDED",
    }


async def test_in_progress_is_planned_when_cancel_statuses_include_it(tmp_path: Path) -> None:
    """With IN_PROGRESS in cancel_statuses it is planned; a platform that does not cancel it
    leaves it still_open and the apply exits 1."""
    fleet = make_fleet()
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        code, _ = await cancel(run, apply=True, statuses=ALL_UNFINISHED)
        assert (code, stats.cancel_calls) == (1, 2)
    assert outcomes_of(run) == {
        "t-1": "cancelled",
        "t-2": "cancelled",
        "t-3": "still_open",
        "t-4": "cancelled",
    }


async def test_manifest_cancel_statuses_are_the_default(tmp_path: Path) -> None:
    """A run whose job file set cancel_statuses plans by them unless --cancel-statuses says
    otherwise."""
    run = make_run_dir(tmp_path, audit_findings(), None)
    manifest = orjson.loads((run / "manifest.json").read_bytes())
    manifest["config"]["cancel_statuses"] = ["QUEUED", "IN_PROGRESS"]
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    _, text = await cancel(run, apply=False)
    planned_ids = pq.read_table(run / "cancel-plan.parquet").column("task_id").to_pylist()
    assert planned_ids == ["t-1", "t-3"]
    assert "(CONFIRM 1, NOTIFIED 1)" in text
    await cancel(run, apply=False, statuses=["CONFIRM"])
    assert pq.read_table(run / "cancel-plan.parquet").column("task_id").to_pylist() == ["t-4"]


async def test_apply_cancels_in_progress_when_the_platform_allows_it(tmp_path: Path) -> None:
    """With IN_PROGRESS cancellable and planned, every task is cancelled and the exit is 0."""
    fleet = make_fleet()
    cancellable = frozenset({"CONFIRM", "QUEUED", "NOTIFIED", "IN_PROGRESS"})
    with emulator(fleet, cancellable=cancellable) as (url, _):
        run = make_run_dir(tmp_path, audit_findings(), url)
        code, _ = await cancel(run, apply=True, statuses=ALL_UNFINISHED)
    assert code == 0
    assert set(outcomes_of(run).values()) == {"cancelled"}
    assert statuses(fleet)["t-fresh"] == "QUEUED"


async def test_second_apply_cancels_nothing_more_and_appends_a_batch(tmp_path: Path) -> None:
    """Applying twice makes no second cancel call and records every task already_finished."""
    fleet = make_fleet()
    cancellable = frozenset({"CONFIRM", "QUEUED", "NOTIFIED", "IN_PROGRESS"})
    with emulator(fleet, cancellable=cancellable) as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        await cancel(run, apply=True, statuses=ALL_UNFINISHED)
        code, text = await cancel(run, apply=True, now_ms=NOW_MS + 60_000, statuses=ALL_UNFINISHED)
        assert (code, stats.cancel_calls) == (0, 2)
    assert set(outcomes_of(run).values()) == {"already_finished"}
    assert pq.read_table(run / "remediation.parquet").num_rows == 8
    assert "already_finished 4" in text


async def test_recheck_drops_tasks_that_changed_between_plan_and_apply(tmp_path: Path) -> None:
    """A task finished elsewhere, or moved on, since the audit is not cancelled by us."""
    fleet = make_fleet()
    rows = audit_findings()
    rows[0]["task_status"] = "CONFIRM"  # the audit saw t-1 in CONFIRM; it is QUEUED now
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, rows, url)
        fleet.cancel(
            "pk1", "fw1", ["dev-2"], job_id="job1", cancellable={"NOTIFIED"}, now_ms=NOW_MS
        )
        await cancel(run, apply=True)
        assert stats.cancelled_tasks == 1  # t-4 only
    got = outcomes_of(run)
    assert (got["t-1"], got["t-2"], got["t-4"]) == ("still_open", "already_finished", "cancelled")
    assert statuses(fleet)["t-1"] == "QUEUED"


async def test_device_list_and_endpoint_override_restrict_and_redirect(tmp_path: Path) -> None:
    """--device-list limits the plan; --endpoint wins over a manifest without one."""
    fleet = make_fleet()
    devices = tmp_path / "devices.csv"
    devices.write_text("product_key,device_name\npk1,dev-4\n")
    with emulator(fleet) as (url, _):
        run = make_run_dir(tmp_path / "run", audit_findings(), None)
        code, _ = await cancel(run, apply=True, device_list=devices, endpoint=url)
    assert (code, outcomes_of(run)) == (0, {"t-4": "cancelled"})
    assert statuses(fleet)["t-1"] == "QUEUED"


async def test_device_that_cannot_be_reread_fails_and_is_not_cancelled(tmp_path: Path) -> None:
    """A device whose re-read fails is recorded failed with the platform's code, exit 1."""
    fleet = make_fleet()
    faults = FaultPlan(failing_devices={"dev-2": "iot.device.NotExistedDevice"})
    with emulator(fleet, faults=faults) as (url, _):
        run = make_run_dir(tmp_path, audit_findings()[:2], url)
        code, _ = await cancel(run, apply=True)
    row = next(
        r for r in pq.read_table(run / "remediation.parquet").to_pylist() if r["task_id"] == "t-2"
    )
    assert (code, row["outcome"], row["error_code"]) == (1, "failed", "iot.device.NotExistedDevice")
    assert statuses(fleet)["t-2"] == "NOTIFIED"


async def test_wrong_secret_aborts_with_auth_error_and_records_nothing(tmp_path: Path) -> None:
    """A refused signature stops the apply at once (exit 3) before any cancel call."""
    fleet = make_fleet()
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        with pytest.raises(AuthError):
            await cancel_command(
                run,
                apply=True,
                credentials=Credentials(TEST_KEY_ID, "wrong"),
                out=io.StringIO(),
                quotas=FAST,
            )
        assert stats.cancel_calls == 0
    assert not (run / "remediation.parquet").exists()


async def test_apply_uses_the_instance_id_the_run_was_made_with(tmp_path: Path) -> None:
    """A run made against an instance cancels on it: the id comes from the manifest."""
    fleet = make_fleet()
    with emulator(fleet, iot_instance_id="iot-inst") as (url, stats):
        run = make_run_dir(tmp_path, audit_findings()[3:4], url, iot_instance_id="iot-inst")
        code, _ = await cancel(run, apply=True)
    assert (code, outcomes_of(run)) == (0, {"t-4": "cancelled"})
    assert stats.cancelled_tasks == 1


async def test_apply_without_the_instance_id_aborts_before_cancelling(tmp_path: Path) -> None:
    """Against an instance that needs an id, an apply without one stops at once (exit 3)."""
    fleet = make_fleet()
    with emulator(fleet, iot_instance_id="iot-inst") as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        with pytest.raises(AuthError, match="iot-instance-id"):
            await cancel(run, apply=True)
        assert stats.cancel_calls == 0
    assert not (run / "remediation.parquet").exists()


async def test_apply_without_an_endpoint_is_a_usage_error(tmp_path: Path) -> None:
    """With no endpoint in the manifest and no --endpoint, apply refuses before any call."""
    run = make_run_dir(tmp_path, audit_findings(), None)
    with pytest.raises(UsageError, match="--endpoint"):
        await cancel(run, apply=True)
    assert not (run / "remediation.parquet").exists()


async def test_apply_without_credentials_is_a_usage_error(tmp_path: Path) -> None:
    """Applying needs credentials; their absence is a usage error, not a crash."""
    run = make_run_dir(tmp_path, audit_findings(), "http://127.0.0.1:9/")
    with pytest.raises(UsageError, match="credentials"):
        await cancel(run, apply=True, credentials=None)


async def test_apply_splits_250_devices_into_calls_the_platform_accepts(tmp_path: Path) -> None:
    """250 stale tasks of one job go out as two calls (200 + 50) and all are cancelled."""
    names = [f"bulk-{i:03}" for i in range(250)]
    builder = platform()
    for name in names:
        stale_task(builder.device(name), f"t-{name}", name, "QUEUED")
    fleet = builder.build()
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, [finding(name, f"t-{name}") for name in names], url)
        code, _ = await cancel(run, apply=True)
        assert (code, stats.cancel_calls, stats.cancelled_tasks) == (0, 2, 250)


def test_cancel_statuses_option_reaches_the_plan(tmp_path: Path) -> None:
    """`fleetaudit cancel RUN --cancel-statuses ...` plans the statuses it names."""
    run = make_run_dir(tmp_path, audit_findings(), None)
    assert main(["cancel", str(run), "--cancel-statuses", "in_progress"]) == 0
    assert pq.read_table(run / "cancel-plan.parquet").column("task_id").to_pylist() == ["t-3"]
