"""Where the two listings of a device's unfinished tasks disagree (pure).

With `tasks_from = "both"` a run reads each device's unfinished tasks per device and from
the jobs' listings; every task one shows and the other does not, or shows in another
status, is a row of the task_disagreements table. That is how a user checks the sweep
against the per-device listing on their own account before relying on it (SWEEP.md: it is
not known whether the platform's two listings can disagree).
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetaudit.models import Device, Task, TaskDisagreement
from fleetaudit.terms import Disagreement


def task_disagreements(
    device: Device, by_device: Sequence[Task], by_job: Sequence[Task]
) -> list[TaskDisagreement]:
    """Every task of `device` the two listings do not agree on, in task id order."""
    device_tasks = {task.task_id: task for task in by_device}
    job_tasks = {task.task_id: task for task in by_job}
    rows: list[TaskDisagreement] = []
    for task_id in sorted(device_tasks.keys() | job_tasks.keys()):
        seen_by_device, seen_by_job = device_tasks.get(task_id), job_tasks.get(task_id)
        if seen_by_device is not None and seen_by_job is not None:
            if seen_by_device.task_status == seen_by_job.task_status:
                continue
            kind = Disagreement.STATUS_DIFFERS
        elif seen_by_device is not None:
            kind = Disagreement.ONLY_BY_DEVICE
        else:
            kind = Disagreement.ONLY_BY_JOB
        task = seen_by_device or seen_by_job
        assert task is not None  # the id came from one of the two
        rows.append(
            TaskDisagreement(
                kind=kind,
                product_key=device.product_key,
                device_name=device.device_name,
                task_id=task_id,
                job_id=task.job_id,
                firmware_id=task.firmware_id,
                module_name=task.module_name,
                status_by_device=seen_by_device.task_status if seen_by_device else None,
                status_by_job=seen_by_job.task_status if seen_by_job else None,
            )
        )
    return rows
