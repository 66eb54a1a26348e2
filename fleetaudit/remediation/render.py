"""The text `fleetaudit cancel` prints: the plan as a table with its calls, and the outcomes.

Pure: values in, a string out. Plain fixed-width text, no colour, so it reads the same in
a terminal, a cron mail and a test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from fleetaudit.durations import format_duration
from fleetaudit.remediation.plan import OUTCOMES, Plan, TaskOutcome


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns, each as wide as its widest cell, two spaces apart."""
    body = [list(row) for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(header)]
    lines = [header, ["-" * w for w in widths], *body]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def format_plan(plan: Plan, *, applying: bool = False) -> str:
    """The plan: one line per task, then the calls, then what to do next."""
    if not plan.tasks:
        lines = ["Nothing to cancel: no finding of the chosen types names a cancellable task."]
        lines += _skipped_note(plan)
        return "\n".join(lines)
    table = format_table(
        ("PRODUCT", "DEVICE", "TASK", "STATUS", "AGE", "REASON", "CALL"),
        (
            (
                t.product_key,
                t.device_name,
                t.task_id,
                t.task_status or "-",
                "-" if t.age_seconds is None else format_duration(t.age_seconds),
                t.finding_type,
                f"#{t.call_index + 1}",
            )
            for t in plan.tasks
        ),
    )
    lines = [f"Cancel plan: {len(plan.tasks)} task(s) in {len(plan.calls)} call(s)", "", table, ""]
    lines += [f"#{i + 1}  {call.describe()}" for i, call in enumerate(plan.calls)]
    lines += _skipped_note(plan)
    lines.append("")
    if applying:
        lines.append("Applying: re-checking every device's unfinished tasks first.")
    else:
        lines.append("Dry run: nothing was called. Re-run with --apply to cancel these tasks.")
    return "\n".join(lines)


def _skipped_note(plan: Plan) -> list[str]:
    notes = []
    if plan.skipped:
        notes.append(
            f"({plan.skipped} finding(s) skipped: no task id, firmware id or device to cancel.)"
        )
    if plan.left_out:
        counts = ", ".join(f"{status} {n}" for status, n in plan.left_out)
        total = sum(n for _, n in plan.left_out)
        notes.append(
            f"({total} task(s) left out by status ({counts}): the platform does not cancel "
            "them; cancel_statuses / --cancel-statuses chooses.)"
        )
    return notes


def format_outcomes(outcomes: Sequence[TaskOutcome]) -> str:
    """Every task's outcome, then the count per outcome."""
    table = format_table(
        ("PRODUCT", "DEVICE", "TASK", "BEFORE", "OUTCOME", "DETAIL"),
        (
            (
                o.product_key,
                o.device_name,
                o.task_id,
                o.task_status_before or "-",
                o.outcome,
                _detail(o),
            )
            for o in outcomes
        ),
    )
    counts = Counter(o.outcome for o in outcomes)
    totals = ", ".join(f"{name} {counts[name]}" for name in OUTCOMES)
    return f"{table}\n\nOutcomes: {totals}"


def _detail(outcome: TaskOutcome) -> str:
    if outcome.error_code and outcome.error_message:
        return f"{outcome.error_code}: {outcome.error_message}"
    return outcome.error_code or outcome.error_message or ""
