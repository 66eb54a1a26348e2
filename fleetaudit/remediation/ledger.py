"""The cancel journal's entries, what they say is unresolved, and the reconciliation.

Pure: values in, values out (files.py owns the file, `cancel-journal.jsonl`). An apply
appends, in this order:

    intent   before each cancel call: the batch, the call and every task it names
    called   after the call answered: its request id, or its failure
    outcome  once a task's fate is known: a remediation.parquet row

A task whose newest intent has no outcome after it is *pending*: an apply was interrupted
between sending a cancel and recording what became of it. The next apply reconciles it
from a fresh re-read instead of calling it `already_finished`: a pending task the platform
no longer lists was cancelled by the interrupted batch's call, and that batch's outcome row
says so; one still listed (the call never arrived, or the platform refused it) is planned
again in the new batch. Either way every task ends with exactly one outcome per batch.

remediation.parquet is rebuilt from the outcome entries, so a batch is never lost to a
crash between the journal and the Parquet file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from fleetaudit.models import CallFailure
from fleetaudit.remediation.plan import (
    Batch,
    CallResult,
    CancelCall,
    DeviceKey,
    DeviceTasks,
    PlannedTask,
    TaskOutcome,
    outcome_for,
)

INTENT, CALLED, OUTCOME = "intent", "called", "outcome"
KINDS = frozenset({INTENT, CALLED, OUTCOME})

_TASK_FIELDS = tuple(f.name for f in fields(PlannedTask) if f.name != "call_index")
_OUTCOME_FIELDS = tuple(f.name for f in fields(TaskOutcome))


@dataclass(frozen=True, slots=True)
class Pending:
    """A task an interrupted batch sent (or was about to send) a cancel call for."""

    batch: Batch
    task: PlannedTask
    request_id: str | None = None  # the call's answer, if it came before the interruption
    failed: bool = False  # the call's answer was a failure


def intent_entry(
    batch: Batch, index: int, call: CancelCall, tasks: Iterable[PlannedTask]
) -> dict[str, Any]:
    """The line written (and fsynced) before call number `index` of `batch` is sent."""
    return {
        "kind": INTENT,
        "batch_id": batch.batch_id,
        "applied_at": batch.applied_at,
        "call": index,
        "product_key": call.product_key,
        "firmware_id": call.firmware_id,
        "job_id": call.job_id,
        "device_names": list(call.device_names),
        "tasks": [{name: getattr(t, name) for name in _TASK_FIELDS} for t in tasks],
    }


def called_entry(batch: Batch, index: int, result: CallResult) -> dict[str, Any]:
    """The line written when call `index` of `batch` answered (a request id or a failure)."""
    entry: dict[str, Any] = {"kind": CALLED, "batch_id": batch.batch_id, "call": index}
    if isinstance(result, CallFailure):
        entry.update(error_code=result.error_code, error_message=result.error_message)
        entry["request_id"] = result.request_id
    else:
        entry["request_id"] = result
    return entry


def outcome_entry(outcome: TaskOutcome) -> dict[str, Any]:
    """The line recording one task's outcome: a remediation.parquet row."""
    return {"kind": OUTCOME, **asdict(outcome)}


def outcomes(entries: Iterable[Mapping[str, Any]]) -> list[TaskOutcome]:
    """Every outcome the journal records, in the order they were written."""
    return [
        TaskOutcome(**{name: e[name] for name in _OUTCOME_FIELDS})
        for e in entries
        if e["kind"] == OUTCOME
    ]


def pending(entries: Iterable[Mapping[str, Any]]) -> list[Pending]:
    """The tasks whose newest intent has no outcome after it, in journal order."""
    state: dict[str, Pending] = {}
    calls: dict[tuple[str, int], list[str]] = {}
    for e in entries:
        if e["kind"] == INTENT:
            batch = Batch(e["batch_id"], e["applied_at"])
            ids = calls.setdefault((e["batch_id"], e["call"]), [])
            for row in e["tasks"]:
                task = PlannedTask(**{name: row[name] for name in _TASK_FIELDS})
                state.pop(task.task_id, None)  # re-insert: journal order is newest intent's
                state[task.task_id] = Pending(batch, task)
                ids.append(task.task_id)
        elif e["kind"] == CALLED:
            for task_id in calls.get((e["batch_id"], e["call"]), ()):
                seen = state.get(task_id)
                if seen is not None and seen.batch.batch_id == e["batch_id"]:
                    failed = e.get("error_code") is not None
                    state[task_id] = Pending(seen.batch, seen.task, e.get("request_id"), failed)
        else:
            state.pop(e["task_id"], None)
    return list(state.values())


def reconcile(
    unresolved: Sequence[Pending], current: Mapping[DeviceKey, DeviceTasks], by: Batch
) -> tuple[list[TaskOutcome], list[PlannedTask]]:
    """Settle pending tasks from a fresh re-read: (outcomes in their own batches, tasks to
    plan again in batch `by`).

    A pending task the platform no longer lists is `cancelled` in the batch that sent the
    call (`already_finished` if that call's answer was a failure: it finished on its own).
    A task still listed, or on a device that could not be re-read, is planned again.
    """
    settled: list[TaskOutcome] = []
    again: list[PlannedTask] = []
    for item in unresolved:
        listed = current.get(item.task.device, ())
        if isinstance(listed, CallFailure) or any(t.task_id == item.task.task_id for t in listed):
            again.append(item.task)
            continue
        if item.failed:
            outcome, how = "already_finished", "its cancel call failed"
        else:
            answered = "answered" if item.request_id is not None else "sent, not answered"
            outcome, how = "cancelled", f"its cancel call was {answered}"
        message = (
            f"apply interrupted ({how}); batch {by.batch_id} found the task no longer unfinished"
        )
        settled.append(
            outcome_for(
                item.batch,
                item.task,
                outcome,
                item.task.task_status,
                message=message,
                request_id=item.request_id,
            )
        )
    return settled, again
