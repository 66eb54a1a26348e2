"""The pure core of `fleetaudit cancel`: the plan, the re-check before applying, outcomes.

Values in, values out: findings rows become a `Plan` (tasks grouped into
CancelOTATaskByDevice calls of at most `MAX_CANCEL_DEVICES` unique devices per (product,
firmware, job)); re-read task lists decide which planned tasks are still safe to cancel
(`recheck`); call results and the confirming re-read decide each task's outcome
(`classify`). No I/O here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fleetaudit.api.protocol import MAX_CANCEL_DEVICES
from fleetaudit.models import CallFailure, Task
from fleetaudit.terms import Action, FindingType

DEFAULT_FINDING_TYPES: tuple[FindingType, ...] = (
    FindingType.STALLED_TASK,
    FindingType.ORPHAN_TASK,
    FindingType.TASK_ALREADY_APPLIED,
)
# Finding types whose rows name one task, so they can be planned for cancellation at all.
TASK_FINDING_TYPES: frozenset[FindingType] = frozenset(
    {
        FindingType.STALLED_TASK,
        FindingType.ORPHAN_TASK,
        FindingType.TASK_ALREADY_APPLIED,
        FindingType.TASK_SRC_MISMATCH,
        FindingType.FIRMWARE_UNVERIFIED,
        FindingType.DUPLICATE_TASKS,
    }
)

OUTCOMES: tuple[str, ...] = ("cancelled", "still_open", "already_finished", "failed")

DeviceKey = tuple[str, str]  # (product_key, device_name)
GroupKey = tuple[str, str, str | None]  # (product_key, firmware_id, job_id)


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One task the plan cancels: a row of cancel-plan.parquet."""

    product_key: str
    device_name: str
    iot_id: str | None
    module_name: str | None
    task_id: str
    task_status: str | None
    firmware_id: str
    job_id: str | None
    finding_type: str  # every finding that named this task, comma-separated
    age_seconds: int | None
    call_index: int = -1  # index into Plan.calls, set by build_plan

    @property
    def device(self) -> DeviceKey:
        return (self.product_key, self.device_name)

    @property
    def group(self) -> GroupKey:
        return (self.product_key, self.firmware_id, self.job_id)


@dataclass(frozen=True, slots=True)
class CancelCall:
    """One CancelOTATaskByDevice call: unique device names, at most MAX_CANCEL_DEVICES."""

    product_key: str
    firmware_id: str
    job_id: str | None
    device_names: tuple[str, ...]

    def describe(self) -> str:
        job = self.job_id if self.job_id is not None else "-"
        return (
            f"{Action.CANCEL_TASKS} ProductKey={self.product_key} FirmwareId={self.firmware_id} "
            f"JobId={job} devices={len(self.device_names)}"
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """The tasks to cancel and the calls that cancel them; `skipped` counts unusable findings,
    `left_out` the tasks not planned because of their status, per status."""

    tasks: tuple[PlannedTask, ...]
    calls: tuple[CancelCall, ...]
    skipped: int = 0
    left_out: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What became of one planned task: a row of remediation.parquet."""

    batch_id: str
    applied_at: int  # epoch ms
    product_key: str
    device_name: str
    task_id: str
    firmware_id: str
    job_id: str | None
    task_status_before: str | None
    outcome: str  # one of OUTCOMES
    error_code: str | None
    error_message: str | None
    request_id: str | None


# A device's unfinished tasks as re-read from the platform, or why the read failed.
DeviceTasks = Sequence[Task] | CallFailure
# What one cancel call returned: its request id, or why it failed.
CallResult = str | CallFailure


def validate_finding_types(finding_types: Iterable[str]) -> tuple[str, ...]:
    """The finding types, deduplicated in order; ValueError names any that name no task."""
    chosen = tuple(dict.fromkeys(finding_types))
    unknown = [name for name in chosen if name not in TASK_FINDING_TYPES]
    if unknown:
        known = ", ".join(sorted(TASK_FINDING_TYPES))
        raise ValueError(f"finding type(s) {', '.join(unknown)} name no task (choose from {known})")
    return chosen


def select_tasks(
    findings: Iterable[Mapping[str, Any]],
    finding_types: Collection[str] = DEFAULT_FINDING_TYPES,
    devices: Collection[DeviceKey] | None = None,
) -> tuple[list[PlannedTask], int]:
    """The tasks named by findings of the chosen types (one per task id), and how many
    findings were skipped because they lack what a cancel call needs.

    `devices`, when given, restricts the plan to those (product_key, device_name) pairs.
    """
    by_task: dict[str, PlannedTask] = {}
    skipped = 0
    for row in findings:
        if row.get("finding_type") not in finding_types:
            continue
        product_key, device_name = row.get("product_key"), row.get("device_name")
        task_id, firmware_id = row.get("task_id"), row.get("firmware_id")
        if not (product_key and device_name and task_id and firmware_id):
            skipped += 1
            continue
        if devices is not None and (product_key, device_name) not in devices:
            continue
        seen = by_task.get(task_id)
        if seen is not None:
            # Several findings can name the same task (stalled and orphan): cancel it once.
            reasons = seen.finding_type.split(",")
            if row["finding_type"] not in reasons:
                by_task[task_id] = replace(
                    seen, finding_type=",".join([*reasons, row["finding_type"]])
                )
            continue
        by_task[task_id] = PlannedTask(
            product_key=product_key,
            device_name=device_name,
            iot_id=row.get("iot_id"),
            module_name=row.get("module_name"),
            task_id=task_id,
            task_status=row.get("task_status"),
            firmware_id=firmware_id,
            job_id=row.get("job_id"),
            finding_type=row["finding_type"],
            age_seconds=row.get("age_seconds"),
        )
    return list(by_task.values()), skipped


def group_calls(tasks: Iterable[PlannedTask]) -> list[CancelCall]:
    """CancelOTATaskByDevice calls covering `tasks`: one group per (product, firmware, job),
    split into calls of at most MAX_CANCEL_DEVICES unique device names, in a stable order."""
    groups: dict[GroupKey, dict[str, None]] = {}
    for task in tasks:
        groups.setdefault(task.group, {})[task.device_name] = None
    calls: list[CancelCall] = []
    for key in sorted(groups, key=_group_sort_key):
        names = sorted(groups[key])
        for start in range(0, len(names), MAX_CANCEL_DEVICES):
            chunk = tuple(names[start : start + MAX_CANCEL_DEVICES])
            calls.append(CancelCall(key[0], key[1], key[2], chunk))
    return calls


def _group_sort_key(key: GroupKey) -> tuple[str, str, str]:
    return (key[0], key[1], key[2] or "")


def build_plan(
    findings: Iterable[Mapping[str, Any]],
    finding_types: Collection[str] = DEFAULT_FINDING_TYPES,
    devices: Collection[DeviceKey] | None = None,
    statuses: Collection[str] | None = None,
) -> Plan:
    """The cancel plan for a run's findings: tasks (each with its call's index) and calls.

    `statuses`, when given, are the task statuses worth a call (the platform cancels only
    some: an IN_PROGRESS task stays upgrading whatever is sent); a task the audit saw in
    another status is left out and counted. A task of unknown status is planned: the
    re-check before the call reads its status anyway.
    """
    tasks, skipped = select_tasks(findings, finding_types, devices)
    left_out: Counter[str] = Counter()
    if statuses is not None:
        kept = [t for t in tasks if t.task_status is None or t.task_status in statuses]
        left_out.update(t.task_status for t in tasks if t not in kept and t.task_status)
        tasks = kept
    return plan_of(tasks, skipped, tuple(sorted(left_out.items())))


def plan_of(
    tasks: Sequence[PlannedTask], skipped: int = 0, left_out: tuple[tuple[str, int], ...] = ()
) -> Plan:
    """The plan cancelling `tasks` (one per task id): each task with its call's index."""
    calls = group_calls(tasks)
    index = call_index(calls)
    placed = [replace(task, call_index=index[(*task.group, task.device_name)]) for task in tasks]
    placed.sort(key=lambda t: (t.call_index, t.device_name, t.task_id))
    return Plan(tasks=tuple(placed), calls=tuple(calls), skipped=skipped, left_out=left_out)


def with_tasks(plan: Plan, extra: Iterable[PlannedTask]) -> Plan:
    """`plan` plus the tasks of `extra` it does not name yet (by task id)."""
    known = {task.task_id for task in plan.tasks}
    added = [task for task in extra if task.task_id not in known]
    if not added:
        return plan
    return plan_of([*plan.tasks, *added], plan.skipped, plan.left_out)


def without_tasks(tasks: Iterable[PlannedTask], task_ids: Collection[str]) -> list[PlannedTask]:
    """`tasks` less those whose id is in `task_ids`."""
    return [task for task in tasks if task.task_id not in task_ids]


def call_index(calls: Sequence[CancelCall]) -> dict[tuple[str, str, str | None, str], int]:
    """(product_key, firmware_id, job_id, device_name) -> the index of the call naming it."""
    return {
        (call.product_key, call.firmware_id, call.job_id, name): i
        for i, call in enumerate(calls)
        for name in call.device_names
    }


@dataclass(frozen=True, slots=True)
class Batch:
    """One `--apply`: every outcome row it writes carries its id and time."""

    batch_id: str
    applied_at: int  # epoch ms


def outcome_for(
    batch: Batch,
    task: PlannedTask,
    outcome: str,
    status_before: str | None,
    *,
    failure: CallFailure | None = None,
    message: str | None = None,
    request_id: str | None = None,
) -> TaskOutcome:
    """The remediation row saying what became of `task` in `batch`."""
    return TaskOutcome(
        batch_id=batch.batch_id,
        applied_at=batch.applied_at,
        product_key=task.product_key,
        device_name=task.device_name,
        task_id=task.task_id,
        firmware_id=task.firmware_id,
        job_id=task.job_id,
        task_status_before=status_before,
        outcome=outcome,
        error_code=failure.error_code if failure is not None else None,
        error_message=failure.error_message if failure is not None else message,
        request_id=failure.request_id if failure is not None else request_id,
    )


def _covered_by(task: Task, group: GroupKey) -> bool:
    """Whether a cancel call for `group` on the task's device would cancel `task` too."""
    _, firmware_id, job_id = group
    return task.firmware_id == firmware_id and (job_id is None or task.job_id == job_id)


def recheck(
    tasks: Iterable[PlannedTask], current: Mapping[DeviceKey, DeviceTasks], batch: Batch
) -> tuple[list[PlannedTask], list[TaskOutcome]]:
    """Split planned tasks into those still safe to cancel and those settled already.

    `current` holds each device's unfinished tasks as re-read just before applying. A task
    no longer listed is `already_finished`; one whose status changed since the audit has
    moved on and is left alone (`still_open`: audit again); a device that could not be
    re-read is `failed`. A call is per device and firmware (and job), so when it would also
    cancel an unfinished task the plan does not name, that device's tasks are left alone too.
    """
    keep: list[PlannedTask] = []
    settled: list[TaskOutcome] = []
    for task in tasks:
        listed = current.get(task.device, ())
        if isinstance(listed, CallFailure):
            settled.append(outcome_for(batch, task, "failed", task.task_status, failure=listed))
            continue
        now = next((t for t in listed if t.task_id == task.task_id), None)
        if now is None:
            settled.append(outcome_for(batch, task, "already_finished", task.task_status))
        elif task.task_status is not None and now.task_status != task.task_status:
            message = f"status changed since the audit ({task.task_status} -> {now.task_status})"
            settled.append(outcome_for(batch, task, "still_open", now.task_status, message=message))
        else:
            keep.append(replace(task, task_status=now.task_status))
    return _drop_collateral(keep, current, batch, settled)


def _drop_collateral(
    keep: list[PlannedTask],
    current: Mapping[DeviceKey, DeviceTasks],
    batch: Batch,
    settled: list[TaskOutcome],
) -> tuple[list[PlannedTask], list[TaskOutcome]]:
    planned_ids = {task.task_id for task in keep}
    safe: list[PlannedTask] = []
    for task in keep:
        listed = current.get(task.device, ())
        assert not isinstance(listed, CallFailure)  # recheck settled those already
        bystander = next(
            (t for t in listed if t.task_id not in planned_ids and _covered_by(t, task.group)),
            None,
        )
        if bystander is None:
            safe.append(task)
            continue
        message = f"the call would also cancel unplanned task {bystander.task_id}"
        settled.append(outcome_for(batch, task, "still_open", task.task_status, message=message))
    return safe, settled


def classify(
    tasks: Iterable[PlannedTask],
    calls: Sequence[CancelCall],
    results: Sequence[CallResult],
    after: Mapping[DeviceKey, DeviceTasks],
    batch: Batch,
) -> list[TaskOutcome]:
    """Each cancelled-for task's outcome from its call's result and the confirming re-read."""
    index = call_index(calls)
    outcomes: list[TaskOutcome] = []
    for task in tasks:
        result = results[index[(*task.group, task.device_name)]]
        if isinstance(result, CallFailure):
            outcomes.append(outcome_for(batch, task, "failed", task.task_status, failure=result))
            continue
        listed = after.get(task.device, ())
        if isinstance(listed, CallFailure):
            outcomes.append(outcome_for(batch, task, "failed", task.task_status, failure=listed))
            continue
        still = next((t for t in listed if t.task_id == task.task_id), None)
        if still is None:
            outcomes.append(
                outcome_for(batch, task, "cancelled", task.task_status, request_id=result)
            )
        else:
            message = f"still {still.task_status} after the cancel call"
            outcomes.append(
                outcome_for(
                    batch, task, "still_open", task.task_status, message=message, request_id=result
                )
            )
    return outcomes


def exit_code(outcomes: Iterable[TaskOutcome]) -> int:
    """0 when every task is cancelled or already finished, 1 when any stayed open or failed."""
    done = {"cancelled", "already_finished"}
    return 0 if all(o.outcome in done for o in outcomes) else 1
