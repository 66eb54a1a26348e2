"""Applying a cancel plan through the client, and the `fleetaudit cancel` command itself.

`apply_plan` re-reads, cancels and re-reads again through an `OtaClient` (the only
platform I/O of remediation), journalling each intent before its call; `cancel_command` is
what the CLI calls: it reads the run directory, prints the plan, and either writes
cancel-plan.parquet (dry run) or, under the apply lock, reconciles what an interrupted apply
left pending, applies the plan and rebuilds remediation.parquet from the journal.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

import anyio

from fleetaudit.api.client import ClientSettings, open_client
from fleetaudit.config import Settings
from fleetaudit.credentials import KEY_ID_ENV, SECRET_ENV
from fleetaudit.devices import read_devices
from fleetaudit.durations import time_id
from fleetaudit.errors import AuthError, CallFailed, UsageError
from fleetaudit.lock import apply_lock
from fleetaudit.models import CallFailure, Credentials, Device, Task
from fleetaudit.remediation.files import (
    Journal,
    device_keys,
    manifest_endpoint,
    manifest_setting,
    manifest_text,
    read_findings,
    rebuild_outcomes,
    write_plan,
)
from fleetaudit.remediation.ledger import (
    Pending,
    called_entry,
    intent_entry,
    outcome_entry,
    pending,
    reconcile,
)
from fleetaudit.remediation.ledger import outcomes as ledger_outcomes
from fleetaudit.remediation.plan import (
    DEFAULT_FINDING_TYPES,
    Batch,
    CallResult,
    CancelCall,
    DeviceKey,
    DeviceTasks,
    Plan,
    PlannedTask,
    TaskOutcome,
    build_plan,
    call_index,
    classify,
    exit_code,
    group_calls,
    recheck,
    validate_finding_types,
    with_tasks,
    without_tasks,
)
from fleetaudit.remediation.render import format_outcomes, format_plan
from fleetaudit.settings import rows

log = logging.getLogger(__name__)

# An apply is interactive (someone waits for it): on the account's shared schedule it takes
# four turns to a nightly run's one, unless --quota-share says otherwise.
APPLY_QUOTA_SHARE = 4

T = TypeVar("T")


class CancelClient(Protocol):
    """The part of `OtaClient` remediation uses."""

    async def list_unfinished_tasks(self, device: Device) -> list[Task]: ...

    async def cancel_tasks(
        self,
        product_key: str,
        firmware_id: str,
        device_names: Sequence[str],
        job_id: str | None = None,
    ) -> str: ...


async def _gather(
    jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int
) -> list[T | CallFailure]:
    """Run `jobs` at most `concurrency` at a time; a failed call becomes its CallFailure.

    AuthError stops everything at once and is raised as itself (not in an exception group),
    so the CLI maps it to exit 3 like any other command.
    """
    results: list[T | CallFailure | None] = [None] * len(jobs)
    abort: list[AuthError] = []
    limiter = anyio.CapacityLimiter(max(concurrency, 1))

    async def run(i: int, job: Callable[[], Awaitable[T]]) -> None:
        async with limiter:
            try:
                results[i] = await job()
            except CallFailed as failed:
                results[i] = failed.failure
            except AuthError as error:
                abort.append(error)
                tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for i, job in enumerate(jobs):
            tg.start_soon(run, i, job)
    if abort:
        raise abort[0]
    done = [result for result in results if result is not None]
    assert len(done) == len(jobs)  # every job stored a result or a failure
    return done


async def read_tasks(
    client: CancelClient, tasks: Iterable[PlannedTask], concurrency: int
) -> dict[DeviceKey, DeviceTasks]:
    """Each planned device's unfinished tasks as the platform lists them now."""
    devices = {task.device: Device(*task.device, task.iot_id) for task in tasks}

    def reader(device: Device) -> Callable[[], Awaitable[list[Task]]]:
        return lambda: client.list_unfinished_tasks(device)

    results = await _gather([reader(d) for d in devices.values()], concurrency)
    return dict(zip(devices, results, strict=True))


async def make_calls(
    client: CancelClient,
    calls: Sequence[CancelCall],
    concurrency: int,
    record: Recorder | None = None,
) -> list[CallResult]:
    """Make every cancel call; each result is its request id or its CallFailure.

    With `record`, each call's intent is on disk before the call is sent, and its answer
    right after: an apply killed mid-call leaves a journal the next apply reconciles from.
    """

    def caller(index: int, call: CancelCall) -> Callable[[], Awaitable[str]]:
        async def job() -> str:
            if record is not None:
                record.intent(index, call)
            try:
                request_id = await client.cancel_tasks(
                    call.product_key, call.firmware_id, call.device_names, call.job_id
                )
            except CallFailed as failed:
                if record is not None:
                    record.called(index, failed.failure)
                raise
            if record is not None:
                record.called(index, request_id)
            return request_id

        return job

    return await _gather([caller(i, call) for i, call in enumerate(calls)], concurrency)


class Recorder:
    """Writes one apply's steps to the cancel journal (see ledger.py for the order)."""

    def __init__(
        self,
        journal: Journal,
        batch: Batch,
        tasks: Sequence[PlannedTask],
        calls: Sequence[CancelCall],
    ) -> None:
        self._journal = journal
        self._batch = batch
        index = call_index(calls)
        self._by_call: dict[int, list[PlannedTask]] = {}
        for task in tasks:
            self._by_call.setdefault(index[(*task.group, task.device_name)], []).append(task)

    def intent(self, index: int, call: CancelCall) -> None:
        """Before call `index` is sent: the call and the tasks it cancels, fsynced."""
        tasks = self._by_call.get(index, [])
        self._journal.append(intent_entry(self._batch, index, call, tasks))

    def called(self, index: int, result: CallResult) -> None:
        """After call `index` answered."""
        self._journal.append(called_entry(self._batch, index, result))

    def outcomes(self, outcomes: Iterable[TaskOutcome]) -> None:
        """Tasks whose fate is known."""
        self._journal.extend(outcome_entry(o) for o in outcomes)


async def apply_plan(
    client: CancelClient,
    plan: Plan,
    batch: Batch,
    *,
    concurrency: int = 16,
    journal: Journal | None = None,
    unresolved: Sequence[Pending] = (),
) -> tuple[list[TaskOutcome], list[TaskOutcome]]:
    """Reconcile, re-check, cancel, confirm: (outcomes settled for interrupted batches, the
    outcome of every task of this batch in plan order).

    `unresolved` are tasks an interrupted apply sent cancels for (from `journal`); the
    first re-read settles those the platform no longer lists, the rest are planned again.
    """
    plan = with_tasks(plan, (item.task for item in unresolved))
    before = await read_tasks(client, plan.tasks, concurrency)
    reconciled, _ = reconcile(unresolved, before, batch)
    done = {o.task_id for o in reconciled}
    to_cancel, settled = recheck(without_tasks(plan.tasks, done), before, batch)
    calls = group_calls(to_cancel)
    record = Recorder(journal, batch, to_cancel, calls) if journal is not None else None
    if record is not None:
        record.outcomes([*reconciled, *settled])
    results = await make_calls(client, calls, concurrency, record)
    after = await read_tasks(client, to_cancel, concurrency)
    confirmed = classify(to_cancel, calls, results, after, batch)
    if record is not None:
        record.outcomes(confirmed)
    order = {task.task_id: i for i, task in enumerate(plan.tasks)}
    return reconciled, sorted(settled + confirmed, key=lambda o: order[o.task_id])


async def cancel_command(
    run_dir: Path,
    *,
    finding_types: Sequence[str] | None = None,
    device_list: Path | None = None,
    statuses: Sequence[str] | None = None,
    endpoint: str | None = None,
    iot_instance_id: str | None = None,
    apply: bool = False,
    credentials: Credentials | None = None,
    out: TextIO,
    quotas: Mapping[str, float] | None = None,
    concurrency: int = 16,
    now_ms: int | None = None,
    rng: random.Random | None = None,
    pacing: Mapping[str, Any] | None = None,
) -> int:
    """`fleetaudit cancel`: print the plan; dry run writes cancel-plan.parquet, `apply`
    cancels and appends outcomes to remediation.parquet. Returns the exit code (0 all done,
    1 some task stayed open or failed); raises UsageError (2) or AuthError (3)."""
    try:
        types = validate_finding_types(finding_types or DEFAULT_FINDING_TYPES)
    except ValueError as error:
        raise UsageError(str(error)) from None
    devices = device_keys(read_devices(device_list)) if device_list is not None else None
    chosen = statuses if statuses is not None else _manifest_statuses(run_dir)
    plan = build_plan(read_findings(run_dir), types, devices, chosen)
    if not apply:
        print(format_plan(plan), file=out)
        print(f"Plan written to {write_plan(run_dir, plan.tasks)}", file=out)
        return 0
    # Settle every usage problem before printing anything that looks like progress.
    settings = replace(
        _client_settings(run_dir, endpoint, quotas, concurrency, iot_instance_id),
        **{**_run_pacing(run_dir), **(pacing or {})},
    )
    if credentials is None:
        raise UsageError(f"--apply needs credentials ({KEY_ID_ENV} and {SECRET_ENV})")
    # One apply per run directory: a second one would re-read the same tasks, cancel them
    # again and overwrite the first's batch in remediation.parquet. LockHeld (exit 4) is
    # raised before anything is printed or called.
    with apply_lock(run_dir), Journal(run_dir) as journal:
        unresolved = pending(journal.entries)
        print(format_plan(plan, applying=True), file=out)
        if unresolved:
            batches = ", ".join(sorted({item.batch.batch_id for item in unresolved}))
            print(
                f"Reconciling {len(unresolved)} task(s) an interrupted apply ({batches}) "
                "sent cancel calls for.",
                file=out,
            )
        if not plan.tasks and not unresolved:
            return 0
        applied_at = now_ms if now_ms is not None else int(time.time() * 1000)
        batch = Batch(time_id(applied_at, (rng or random.Random()).getrandbits(24)), applied_at)
        async with open_client(settings, credentials) as client:
            reconciled, outcomes = await apply_plan(
                client, plan, batch, concurrency=concurrency, journal=journal, unresolved=unresolved
            )
        path = rebuild_outcomes(run_dir, ledger_outcomes(journal.read()))
    if reconciled:
        print(f"\nReconciled (interrupted batches):\n{format_outcomes(reconciled)}", file=out)
    print(f"\n{format_outcomes(outcomes)}", file=out)
    print(f"Batch {batch.batch_id} recorded in {path}", file=out)
    return exit_code([*reconciled, *outcomes])


def _manifest_statuses(run_dir: Path) -> Sequence[str]:
    """`cancel_statuses` as the run recorded it (its job file may set it), else the default."""
    row = rows(Settings)["cancel_statuses"]
    recorded = manifest_setting(run_dir, "cancel_statuses")
    if recorded is None:
        return tuple(Settings().cancel_statuses)
    try:
        chosen: Sequence[str] = row.kind.from_toml(recorded, run_dir)
    except ValueError as error:
        raise UsageError(f"{run_dir}: manifest cancel_statuses {recorded!r}: {error}") from None
    return chosen


def _run_pacing(run_dir: Path) -> dict[str, Any]:
    """The shared quota as the run booked it (its `account` and `quota_store`), so the apply
    shares the schedule of the nightly that found the tasks; and the apply's own share."""
    pacing: dict[str, Any] = {"quota_share": APPLY_QUOTA_SHARE}
    account = manifest_text(run_dir, "account")
    if account is not None:
        pacing["account"] = account
    store = manifest_text(run_dir, "quota_store")
    if store is not None and "***" in store:
        # The manifest keeps no password: the apply cannot reach that Redis without one.
        log.warning(
            "the run booked its calls in %s, whose password the manifest does not keep: "
            "pass --quota-store to share its schedule",
            store,
        )
    elif store is not None:
        pacing["quota_store"] = store
    return pacing


def _client_settings(
    run_dir: Path,
    endpoint: str | None,
    quotas: Mapping[str, float] | None,
    concurrency: int,
    iot_instance_id: str | None = None,
) -> ClientSettings:
    """Client settings for the apply: the endpoint and the IoT instance id from the options,
    else from the run's manifest (a run against an instance cancels on the same instance)."""
    resolved = endpoint or manifest_endpoint(run_dir)
    if resolved is None:
        raise UsageError(f"{run_dir}: the manifest records no endpoint; pass --endpoint URL")
    instance = iot_instance_id or manifest_text(run_dir, "iot_instance_id")
    if quotas is None:
        return ClientSettings(endpoint=resolved, concurrency=concurrency, iot_instance_id=instance)
    return ClientSettings(
        endpoint=resolved, quotas=quotas, concurrency=concurrency, iot_instance_id=instance
    )
