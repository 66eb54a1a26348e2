"""Every finding rule of the report contract, as pure functions of one device's rows.

`device_findings` runs the per-device rules over what the API said about one device (the
fleet-majority rule, which needs the whole run, is in `majority.py`). Only unfinished
tasks are looked at: a terminal task never makes a finding. A firmware or job that could
not be looked up is simply absent from its mapping, and the rules that need it skip it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from fleetaudit.durations import format_duration
from fleetaudit.models import (
    Device,
    Finding,
    Firmware,
    Job,
    ModuleVersion,
    Task,
    job_key,
)
from fleetaudit.policy import Policy, Target
from fleetaudit.terms import UNFINISHED_STATUSES, FindingType, Severity, TaskStatus

DEFAULT_MODULE = "default"
_ENDED_JOB_STATUSES = frozenset({"COMPLETED", "CANCELED"})
# Firmware status -> (severity, what the detail says); other statuses are fine.
_UNVERIFIED = {
    0: (Severity.WARNING, "is not verified"),
    3: (Severity.CRITICAL, "failed verification"),
}


def module_of(name: str | None) -> str:
    """A module name as the platform means it: an empty name is the whole-device firmware."""
    return name.strip() if name and name.strip() else DEFAULT_MODULE


def expected_versions(
    policy: Policy, firmware: Mapping[str, Firmware]
) -> dict[tuple[str, str], str]:
    """(product_key, module) -> the version the policy expects.

    A literal target gives its version; a firmware target gives that firmware's
    `dest_version`. A firmware target whose lookup failed (absent from `firmware`, or without
    a destination version) has no expected version, so it makes no drift findings.
    """
    expected: dict[tuple[str, str], str] = {}
    for target in policy.targets:
        version = target.version
        if target.firmware_id is not None:
            package = firmware.get(target.firmware_id)
            version = package.dest_version if package else None
        if version:
            expected[(target.product_key, target.module)] = version
    return expected


def targeted_modules(policy: Policy) -> frozenset[tuple[str, str]]:
    """Every (product_key, module) with a policy target, whether or not its lookup worked."""
    return frozenset((t.product_key, t.module) for t in policy.targets)


@dataclass(frozen=True, slots=True)
class _View:
    """One device's rows and the run's context, as every per-device rule sees them."""

    device: Device  # with the iot_id the API reported when the device list had none
    current: Mapping[str, str]  # module -> version the device reports
    tasks: Sequence[Task]  # unfinished only
    expected: Mapping[tuple[str, str], str]
    firmware: Mapping[str, Firmware]
    jobs: Mapping[tuple[str, str], Job]
    policy: Policy
    now_ms: int


def device_findings(
    device: Device,
    modules: Sequence[ModuleVersion],
    tasks: Sequence[Task],
    *,
    expected: Mapping[tuple[str, str], str],
    firmware: Mapping[str, Firmware],
    jobs: Mapping[tuple[str, str], Job],
    policy: Policy,
    now_ms: int,
    modules_listed: bool = True,
) -> list[Finding]:
    """Every finding for one device whose module versions were listed successfully.

    `jobs` is keyed by (firmware_id, job_id). Call this only when the module listing
    worked: an empty `modules` means the device reports no module, and every target of its
    product then counts as `module_missing`. A tasks-only audit (`modules_listed=False`)
    gets the task rules that need no module versions.
    """
    known_ids = (device.iot_id, *(m.iot_id for m in modules), *(t.iot_id for t in tasks))
    view = _View(
        device=replace(device, iot_id=next((i for i in known_ids if i), None)),
        current={module_of(m.module_name): m.module_version for m in modules},
        tasks=[t for t in tasks if t.task_status in UNFINISHED_STATUSES],
        expected=expected,
        firmware=firmware,
        jobs=jobs,
        policy=policy,
        now_ms=now_ms,
    )
    rules = _RULES if modules_listed else _TASK_ONLY_RULES
    return [finding for rule in rules for finding in rule(view)]


def device_not_found_finding(device: Device) -> Finding:
    """The finding for a device the platform says does not exist."""
    return finding_about(
        FindingType.DEVICE_NOT_FOUND,
        Severity.WARNING,
        f"The platform says device {device.device_name} of product {device.product_key} "
        "does not exist.",
        device,
    )


def finding_about(
    finding_type: FindingType,
    severity: Severity,
    detail: str,
    device: Device,
    *,
    module_name: str | None = None,
    observed_version: str | None = None,
    expected_version: str | None = None,
    firmware_id: str | None = None,
) -> Finding:
    """A finding about a device or one of its modules (no task columns)."""
    return Finding(
        finding_type=finding_type,
        severity=severity,
        product_key=device.product_key,
        device_name=device.device_name,
        iot_id=device.iot_id,
        module_name=module_name,
        observed_version=observed_version,
        expected_version=expected_version,
        task_id=None,
        task_status=None,
        firmware_id=firmware_id,
        job_id=None,
        age_seconds=None,
        detail=detail,
    )


# ---------------------------------------------------------------------------- module rules


def _target(policy: Policy, product_key: str, module: str) -> Target | None:
    return next(
        (t for t in policy.targets if (t.product_key, t.module) == (product_key, module)), None
    )


def _describe(target: Target | None, version: str | None) -> str:
    if target is not None and target.firmware_id is not None:
        return f"firmware {target.firmware_id} (version {version or 'unknown'})"
    return f"version {version}"


def _version_drift(view: _View) -> Iterator[Finding]:
    """A reported module whose version differs from its policy target (warning)."""
    product_key = view.device.product_key
    for module, observed in view.current.items():
        wanted = view.expected.get((product_key, module))
        if wanted is None or observed == wanted:
            continue
        target = _target(view.policy, product_key, module)
        yield finding_about(
            FindingType.VERSION_DRIFT,
            Severity.WARNING,
            f"Module {module} runs {observed}, but the policy target is "
            f"{_describe(target, wanted)}.",
            view.device,
            module_name=module,
            observed_version=observed,
            expected_version=wanted,
            firmware_id=target.firmware_id if target else None,
        )


def _module_missing(view: _View) -> Iterator[Finding]:
    """A module the policy targets for this product that the device does not report."""
    product_key = view.device.product_key
    for target in view.policy.targets:
        if target.product_key != product_key or target.module in view.current:
            continue
        wanted = view.expected.get((product_key, target.module))
        yield finding_about(
            FindingType.MODULE_MISSING,
            Severity.WARNING,
            f"The device does not report module {target.module}, which the policy targets "
            f"at {_describe(target, wanted)}.",
            view.device,
            module_name=target.module,
            expected_version=wanted,
            firmware_id=target.firmware_id,
        )


# ---------------------------------------------------------------------------- task rules


def task_age_seconds(task: Task, now_ms: int) -> int | None:
    """Seconds since the task last changed (or was created, when no change is recorded)."""
    since = task.utc_modified if task.utc_modified is not None else task.utc_create
    return None if since is None else (now_ms - since) // 1000


def _age_seconds(view: _View, task: Task) -> int | None:
    return task_age_seconds(task, view.now_ms)


def _task_finding(
    view: _View, task: Task, finding_type: FindingType, severity: Severity, detail: str
) -> Finding:
    """A finding about one task: observed is the device's version of the task's module,
    expected is the task's destination version."""
    module = module_of(task.module_name)
    return Finding(
        finding_type=finding_type,
        severity=severity,
        product_key=view.device.product_key,
        device_name=view.device.device_name,
        iot_id=view.device.iot_id,
        module_name=module,
        observed_version=view.current.get(module),
        expected_version=task.dest_version,
        task_id=task.task_id,
        task_status=task.task_status,
        firmware_id=task.firmware_id,
        job_id=task.job_id,
        age_seconds=_age_seconds(view, task),
        detail=detail,
    )


def _stalled_task(view: _View) -> Iterator[Finding]:
    """An unfinished task unchanged for longer than `stalled_after[status]` (warning)."""
    for task in view.tasks:
        age = _age_seconds(view, task)
        limit = view.policy.stalled_after.get(task.task_status)
        if age is None or limit is None or age <= limit:
            continue
        yield _task_finding(
            view,
            task,
            FindingType.STALLED_TASK,
            Severity.WARNING,
            f"Task {task.task_id} has been {task.task_status} for {format_duration(age)} "
            f"(limit {format_duration(limit, parts=4)}).{task_context(task, age)}",
        )


def task_context(task: Task, age_seconds: int) -> str:
    """What the job's listing adds to a task finding: progress, timeout, the platform's words.

    The platform's upgrade timeout starts at the first progress report (NOTES.md), so only
    an IN_PROGRESS task can be past it; one far past it is stuck, not slow.
    """
    said = ""
    if task.task_status == TaskStatus.IN_PROGRESS and task.progress is not None:
        said += f" It is at {task.progress}%"
        timeout = task.job_timeout_minutes
        if timeout:
            times = age_seconds / (timeout * 60)
            if times >= 2:
                said += f", {times:.0f} times its job's {format_duration(timeout * 60)} timeout"
            elif times > 1:
                said += f", past its job's {format_duration(timeout * 60)} timeout"
        said += "."
    if task.task_desc:
        said += f" The platform says: {task.task_desc}"
    return said


def _task_src_mismatch(view: _View) -> Iterator[Finding]:
    """A task whose source version is not what the device runs, nor already its destination.

    Critical: the package was built for another version and will fail or brick the update.
    A device that does not report the task's module at all also counts as a mismatch: a
    package that needs a source version cannot apply to a module with no version.
    """
    for task in view.tasks:
        current = view.current.get(module_of(task.module_name))
        if not task.src_version or current == task.src_version or current == task.dest_version:
            continue
        module = module_of(task.module_name)
        reported = f"reports {current}" if current is not None else "does not report it"
        yield _task_finding(
            view,
            task,
            FindingType.TASK_SRC_MISMATCH,
            Severity.CRITICAL,
            f"Task {task.task_id} upgrades module {module} from {task.src_version}, "
            f"but the device {reported}.",
        )


def _task_already_applied(view: _View) -> Iterator[Finding]:
    """An unfinished task whose destination version the device already reports (info)."""
    for task in view.tasks:
        current = view.current.get(module_of(task.module_name))
        if not task.dest_version or current != task.dest_version:
            continue
        yield _task_finding(
            view,
            task,
            FindingType.TASK_ALREADY_APPLIED,
            Severity.INFO,
            f"Task {task.task_id} is still {task.task_status}, but the device already "
            f"reports version {current}.",
        )


def _orphan_task(view: _View) -> Iterator[Finding]:
    """An unfinished task whose job is COMPLETED or CANCELED (warning)."""
    for task in view.tasks:
        if task.firmware_id is None or task.job_id is None:
            continue
        job = view.jobs.get(job_key(task.firmware_id, task.job_id))
        if job is None or job.job_status not in _ENDED_JOB_STATUSES:
            continue
        yield _task_finding(
            view,
            task,
            FindingType.ORPHAN_TASK,
            Severity.WARNING,
            f"Task {task.task_id} is still {task.task_status}, but its job {task.job_id} "
            f"is {job.job_status}.",
        )


def _firmware_unverified(view: _View) -> Iterator[Finding]:
    """A task whose firmware is not verified (warning) or failed verification (critical)."""
    for task in view.tasks:
        package = view.firmware.get(task.firmware_id) if task.firmware_id else None
        if package is None or package.status not in _UNVERIFIED:
            continue
        severity, state = _UNVERIFIED[package.status]
        yield _task_finding(
            view,
            task,
            FindingType.FIRMWARE_UNVERIFIED,
            severity,
            f"Task {task.task_id} installs firmware {task.firmware_id}, which {state}.",
        )


def _duplicate_tasks(view: _View) -> Iterator[Finding]:
    """One row per task when the device has more than one unfinished task for a module."""
    per_module: dict[str, list[Task]] = {}
    for task in view.tasks:
        per_module.setdefault(module_of(task.module_name), []).append(task)
    for module, group in per_module.items():
        if len(group) < 2:
            continue
        # Sorted: tasks arrive in whatever order the listings answered (the sweep reads
        # several jobs at once), and a detail must not change from run to run with it.
        ids = ", ".join(sorted(t.task_id for t in group))
        for task in group:
            yield _task_finding(
                view,
                task,
                FindingType.DUPLICATE_TASKS,
                Severity.WARNING,
                f"Task {task.task_id} is one of {len(group)} unfinished tasks for module "
                f"{module} (tasks {ids}).",
            )


_RULES: tuple[Callable[[_View], Iterable[Finding]], ...] = (
    _version_drift,
    _module_missing,
    _stalled_task,
    _task_src_mismatch,
    _task_already_applied,
    _orphan_task,
    _firmware_unverified,
    _duplicate_tasks,
)
# Without module versions: the rules that look only at tasks, firmware and jobs.
_TASK_ONLY_RULES: tuple[Callable[[_View], Iterable[Finding]], ...] = (
    _stalled_task,
    _orphan_task,
    _firmware_unverified,
    _duplicate_tasks,
)
