"""Cancelling stale OTA tasks (`fleetaudit cancel`): plan from a run's findings, dry run first.

plan.py    pure: findings -> Plan (calls of <= 200 devices per product/firmware/job),
           the re-check before applying, each task's outcome
render.py  pure: the plan and outcome tables the command prints
files.py   the run-directory files read and written (atomically)
apply.py   re-read, cancel, confirm through the client; `cancel_command` for the CLI
"""

from fleetaudit.remediation.apply import apply_plan, cancel_command
from fleetaudit.remediation.plan import (
    DEFAULT_FINDING_TYPES,
    MAX_DEVICES_PER_CALL,
    Batch,
    CancelCall,
    Plan,
    PlannedTask,
    TaskOutcome,
    build_plan,
)

__all__ = [
    "DEFAULT_FINDING_TYPES",
    "MAX_DEVICES_PER_CALL",
    "Batch",
    "CancelCall",
    "Plan",
    "PlannedTask",
    "TaskOutcome",
    "apply_plan",
    "build_plan",
    "cancel_command",
]
