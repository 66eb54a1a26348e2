"""The cancel journal: intents on disk before each call, and reconciling an interrupted apply."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from fleetaudit.emulator.app import STATS_KEY, create_app
from fleetaudit.emulator.fleet import StaticFleet
from fleetaudit.emulator.server import serve_in_thread
from fleetaudit.errors import UsageError
from fleetaudit.models import CallFailure
from fleetaudit.remediation.files import JOURNAL_FILE, Journal, rebuild_outcomes
from fleetaudit.remediation.ledger import (
    called_entry,
    intent_entry,
    outcome_entry,
    outcomes,
    pending,
    reconcile,
)
from fleetaudit.remediation.plan import Batch, DeviceKey, DeviceTasks, build_plan, outcome_for
from fleetaudit.terms import Action

from cancel_helpers import (
    FAST,
    NOW_MS,
    apply_command,
    cancel,
    finding,
    make_run_dir,
    platform,
    platform_task,
    stale_task,
    statuses,
)
from helpers import TEST_KEY_ID, TEST_SECRET, emulator_url

A = Batch("20250101T000000Z-aaaaaa", NOW_MS)
B = Batch("20250101T000100Z-bbbbbb", NOW_MS + 60_000)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Five stale tasks in three cancel calls: (fw1, job1) dev-1 dev-2, (fw2, job2) dev-3 dev-4,
# (fw1, job3) dev-5.
GROUPS = {"dev-1": ("fw1", "job1"), "dev-2": ("fw1", "job1"), "dev-3": ("fw2", "job2")}
GROUPS |= {"dev-4": ("fw2", "job2"), "dev-5": ("fw1", "job3")}


def five_task_fleet() -> StaticFleet:
    """The platform with the five QUEUED tasks of GROUPS, t-1 .. t-5."""
    fleet = platform()
    for i, (device, (fw, job)) in enumerate(GROUPS.items(), 1):
        fleet.device(device, {"default": "1.0"})
        stale_task(fleet, f"t-{i}", device, "QUEUED", fw=fw, job=job)
    return fleet.build()


def five_findings() -> list[dict[str, object]]:
    """The audit's stalled_task findings for five_task_fleet()."""
    return [
        finding(device, f"t-{i}", firmware_id=fw, job_id=job)
        for i, (device, (fw, job)) in enumerate(GROUPS.items(), 1)
    ]


class CancelGate:
    """An emulator middleware that interrupts an apply mid-call, without timing.

    The first cancel call is answered; the second is carried out by the platform but its
    answer withheld; the third is withheld before it reaches the platform. `all_in` is set
    once three have arrived (every call of the plan is in flight), `release` lets the
    withheld ones end by closing their connections (`ended` once they have). Later calls
    pass untouched.
    """

    def __init__(self) -> None:
        self.arrived: list[list[str]] = []
        self.all_in = threading.Event()
        self.release = threading.Event()
        self.ended = threading.Event()  # every withheld call ended, its socket closed
        self._held = 0
        self._lock = threading.Lock()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST":
            params.update((k, v) for k, v in (await request.post()).items() if isinstance(v, str))
        if params.get("Action") != Action.CANCEL_TASKS or len(self.arrived) >= 3:
            return await handler(request)
        seen = len(self.arrived)
        if seen:
            with self._lock:
                self._held += 1
        self.arrived.append(sorted(v for k, v in params.items() if k.startswith("DeviceName.")))
        if seen == 0:
            return await handler(request)
        if seen == 1:
            await handler(request)  # the platform cancels; the client never hears of it
        if len(self.arrived) == 3:
            self.all_in.set()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
            transport = request.transport
            if transport is not None:
                transport.abort()  # no answer ever: close the socket, like a dead proxy
            raise asyncio.CancelledError
        finally:
            with self._lock:
                self._held -= 1
                if not self._held:
                    self.ended.set()


def kill_apply_when_all_calls_are_in(run: Path, url: str, gate: CancelGate) -> None:
    """Start `cancel --apply` in a child process and SIGKILL it once `gate.all_in` is set."""
    argv, env = apply_command(run, url)
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        assert gate.all_in.wait(timeout=60), "the apply never sent its three calls"
    finally:
        child.kill()
        child.wait(timeout=30)
        gate.release.set()
        assert gate.ended.wait(timeout=30)


def tasks_of(devices: list[str]) -> set[str]:
    """The task ids of five_task_fleet() on `devices`."""
    names = list(GROUPS)
    return {f"t-{names.index(d) + 1}" for d in devices}


def remediation_rows(run: Path) -> list[dict[str, Any]]:
    """Every row of remediation.parquet."""
    rows: list[dict[str, Any]] = pq.read_table(run / "remediation.parquet").to_pylist()
    return rows


async def test_interrupted_apply_is_reconciled_with_one_honest_outcome_per_task(
    tmp_path: Path,
) -> None:
    """An apply killed with its calls in flight leaves intents; the next apply records the
    tasks it cancelled as `cancelled` in its batch, re-cancels only the rest, once each."""
    fleet = five_task_fleet()
    gate = CancelGate()
    app = create_app(fleet, credentials={TEST_KEY_ID: TEST_SECRET}, quotas=FAST)
    app.middlewares.append(gate.middleware)  # before serving: the app freezes then
    stats = app[STATS_KEY]
    with serve_in_thread(app) as url:
        run = make_run_dir(tmp_path, five_findings(), url)
        kill_apply_when_all_calls_are_in(run, url, gate)
        interrupted = stats.cancel_calls
        code, text = await cancel(run, apply=True, now_ms=NOW_MS + 60_000)
        second = stats.cancel_calls - interrupted
    answered, carried_out, never_arrived = (tasks_of(d) for d in gate.arrived)
    rows = remediation_rows(run)
    assert code == 0, text
    assert "Reconciling 5 task(s)" in text
    assert sorted(r["task_id"] for r in rows) == ["t-1", "t-2", "t-3", "t-4", "t-5"]
    assert {r["outcome"] for r in rows} == {"cancelled"}
    batches = {r["task_id"]: r["batch_id"] for r in rows}
    first = {batches[t] for t in answered | carried_out}
    assert len(first) == 1
    assert first != {batches[t] for t in never_arrived}
    request_ids = {r["task_id"]: r["request_id"] for r in rows}
    assert all(request_ids[t] for t in answered)
    assert not any(request_ids[t] for t in carried_out)
    assert (interrupted, second) == (2, 1)  # 3 calls for 5 tasks, 4 requests in all
    assert set(statuses(fleet).values()) == {"CANCELED"}


async def test_a_batch_is_rebuilt_from_the_journal_when_the_parquet_missed_it(
    tmp_path: Path,
) -> None:
    """A crash between the journal and remediation.parquet loses no batch: the next apply
    rebuilds the file from the journal."""
    fleet = five_task_fleet()
    with emulator_url(fleet, quotas=FAST) as (url, _):
        run = make_run_dir(tmp_path, five_findings(), url)
        await cancel(run, apply=True)
        (run / "remediation.parquet").unlink()  # as if killed before the rebuild
        code, _ = await cancel(run, apply=True, now_ms=NOW_MS + 60_000)
    rows = remediation_rows(run)
    assert code == 0
    assert (len({r["batch_id"] for r in rows}), len(rows)) == (2, 10)


def test_journal_lines_are_on_disk_before_the_call(tmp_path: Path) -> None:
    """An intent is in the file (one JSON line) as soon as append returns."""
    plan = build_plan(five_findings())
    with Journal(tmp_path) as journal:
        journal.append(intent_entry(A, 0, plan.calls[0], plan.tasks[:2]))
        lines = (tmp_path / JOURNAL_FILE).read_bytes().splitlines()
    assert [orjson.loads(line)["kind"] for line in lines] == ["intent"]


def test_torn_last_line_is_cut_off_on_open(tmp_path: Path) -> None:
    """A line the process died writing never happened; the lines before it stay."""
    plan = build_plan(five_findings())
    whole = orjson.dumps(intent_entry(A, 0, plan.calls[0], plan.tasks[:2])) + b"\n"
    (tmp_path / JOURNAL_FILE).write_bytes(whole + b'{"kind": "cal')
    with Journal(tmp_path) as journal:
        assert [e["kind"] for e in journal.entries] == ["intent"]
    assert (tmp_path / JOURNAL_FILE).read_bytes() == whole


def test_a_garbled_journal_line_is_a_usage_error(tmp_path: Path) -> None:
    """A whole line that is not an entry names the file and line instead of guessing."""
    (tmp_path / JOURNAL_FILE).write_bytes(b"not json\n")
    with pytest.raises(UsageError, match="line 1"):
        Journal(tmp_path)


def test_pending_is_an_intent_without_a_later_outcome() -> None:
    """Tasks with an intent but no outcome are pending; recording the outcome resolves them."""
    plan = build_plan(five_findings())
    call0 = [t for t in plan.tasks if t.call_index == 0]
    entries = [intent_entry(A, 0, plan.calls[0], call0), called_entry(A, 0, "req-1")]
    assert [(p.task.task_id, p.request_id) for p in pending(entries)] == [
        (t.task_id, "req-1") for t in call0
    ]
    done = outcome_for(A, call0[0], "cancelled", "QUEUED", request_id="req-1")
    entries.append(outcome_entry(done))
    assert [p.task.task_id for p in pending(entries)] == [t.task_id for t in call0[1:]]
    assert outcomes(entries) == [done]


def test_reconcile_splits_gone_from_still_listed_and_failed_calls() -> None:
    """Gone after an answered call: cancelled; gone after a failed call: already finished;
    still listed: planned again."""
    plan = build_plan(five_findings())
    call0 = [t for t in plan.tasks if t.call_index == 0]
    call1 = [t for t in plan.tasks if t.call_index == 1]
    refused = CallFailure(
        Action.CANCEL_TASKS, "pk1", "dev-1", None, None, "iot.x", "no", 200, 1, "req-f"
    )
    entries = [
        intent_entry(A, 0, plan.calls[0], call0),
        intent_entry(A, 1, plan.calls[1], call1),
        called_entry(A, 0, "req-1"),
        called_entry(A, 1, refused),
    ]
    still = call0[0]
    current: dict[DeviceKey, DeviceTasks] = {t.device: [] for t in plan.tasks}
    current[still.device] = [platform_task(still)]
    settled, again = reconcile(pending(entries), current, B)
    assert [t.task_id for t in again] == [still.task_id]
    got = {o.task_id: (o.batch_id, o.outcome) for o in settled}
    assert got == {
        **{t.task_id: (A.batch_id, "cancelled") for t in call0[1:]},
        **{t.task_id: (A.batch_id, "already_finished") for t in call1},
    }


def test_rebuild_keeps_batches_written_before_the_journal(tmp_path: Path) -> None:
    """remediation.parquet rows of batches the journal never saw are kept, first."""
    plan = build_plan(five_findings())
    old = outcome_for(A, plan.tasks[0], "cancelled", "QUEUED")
    new = outcome_for(B, plan.tasks[1], "cancelled", "QUEUED")
    rebuild_outcomes(tmp_path, [old])
    rebuild_outcomes(tmp_path, [new])
    rows = remediation_rows(tmp_path)
    assert [(r["batch_id"], r["task_id"]) for r in rows] == [
        (A.batch_id, old.task_id),
        (B.batch_id, new.task_id),
    ]
