"""Every `run` setting and every `[gate]` rule, declared once (pure but for reading the job file).

Each field below is one row (see settings.py): its name is the job-file key, and the row
gives the default, the command-line flag, the help, the accepted values and whether the
manifest records it. The CLI options, the job-file loader, the override merge and the
manifest's `config` are all derived from these rows, so a new setting is a new row.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetaudit.api.protocol import CANCELLABLE_STATUSES
from fleetaudit.errors import UsageError
from fleetaudit.settings import (
    Choice,
    Choices,
    Flag,
    Moment,
    Number,
    PathValue,
    PerName,
    QuotaStore,
    SampleSize,
    Section,
    Text,
    Url,
    Whole,
    build,
    describe,
    missing_required,
    option_values,
    setting,
    table_values,
)
from fleetaudit.terms import UNFINISHED_STATUSES, Action, TasksFrom
from fleetaudit.tomlfile import read_toml

# Every quota, timeout and count has a ceiling: a typo of three zeros should be refused,
# not run for a day (`concurrency = 10000000000` used to hang before the first call).
_RATE = Number(0, 10_000, low_open=True)
_SECONDS = Number(0, 3_600, low_open=True)
_COUNT = Whole(0, 1_000_000_000)
# What a run can audit: module versions and unfinished tasks (tasks are always audited).
AUDITS: tuple[str, ...] = ("modules", "tasks")


@dataclass(frozen=True, slots=True)
class GateRules:
    """A job's `[gate]`: thresholds a finished run must stay within, else `run` exits 1.

    An unset rule (None, or False) cannot trip. The scope (`product_key`, `module`) narrows
    the drift and unfinished-task rules.
    """

    max_critical: int | None = setting(_COUNT, "more critical findings than this trips the gate")
    max_stalled_tasks: int | None = setting(_COUNT, "more stalled_task findings than this")
    max_drift_percent: float | None = setting(
        Number(0, 100), "more than this % of the scoped devices drifting"
    )
    fail_on_unfinished_tasks: bool = setting(
        Flag(), "any scoped device with an unfinished task", default=False
    )
    product_key: str | None = setting(Text(), "scope of the drift and unfinished-task rules")
    module: str | None = setting(Text(), "narrower scope: one module (needs product_key)")
    show_devices: int = setting(
        Whole(1, 100_000), "device names printed per tripped rule", default=10
    )
    max_new_critical: int | None = setting(
        _COUNT, "more critical findings new since the previous run of the series than this"
    )
    max_new: int | None = setting(
        _COUNT, "more findings new since the previous run of the series than this"
    )
    drift_bound: str = setting(
        Choice(("lower", "estimate", "upper")), "with a `sample`, the bound of the drift "
        "share's 95 percent interval that max_drift_percent is checked against", default="lower",
    )  # fmt: skip

    def check(self) -> None:
        """Rules that only make sense together; a ValueError names the key."""
        if self.module is not None and self.product_key is None:
            raise ValueError("module: needs product_key: a module name is only unique per product")

    @property
    def enabled(self) -> bool:
        """Whether any rule can trip."""
        return (
            self.max_critical is not None
            or self.max_stalled_tasks is not None
            or self.max_new_critical is not None
            or self.max_new is not None
            or self.max_drift_percent is not None
            or self.fail_on_unfinished_tasks
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Every `fleetaudit run` setting, as the job file and the command line give it."""

    endpoint: str | None = setting(
        Url(), "the platform's API endpoint", flag="--endpoint", metavar="URL", required=True,
        identity=True,
    )  # fmt: skip
    devices: Path | None = setting(
        PathValue(), ".csv, .jsonl or .parquet", flag="--devices", metavar="PATH", required=True
    )
    policy: Path | None = setting(
        PathValue(), "policy file (TOML)", flag="--policy", metavar="PATH"
    )
    out: Path = setting(
        PathValue(), "where runs are written", default=Path("reports"), flag="--out", metavar="DIR"
    )
    qps: float | None = setting(_RATE, "every action's quota, calls/s", flag="--qps", metavar="N")
    quotas: Mapping[str, float] = setting(
        PerName(tuple(Action), _RATE), "per action, calls/s, overriding qps", default={}
    )
    quota_store: str | None = setting(
        QuotaStore(), "where every process of the account books its calls on one schedule, "
        "so together they stay under the quota: a directory (default "
        "$XDG_STATE_HOME/fleetaudit), redis://host:6379/0 across hosts, or off",
        flag="--quota-store", metavar="DIR|URL|off",
    )  # fmt: skip
    account: str | None = setting(
        Text(), "whose quota this is (default: the endpoint's host and a digest of the key "
        "id); RAM users of one account set the same name", flag="--account", metavar="NAME",
    )  # fmt: skip
    quota_share: int = setting(
        Whole(1, 64), "call slots this process may hold ahead on the shared schedule: its "
        "weight against the account's other processes (a gate with 4 beside a nightly with "
        "1 gets 4/5 of the quota)", default=1, flag="--quota-share", metavar="N",
    )  # fmt: skip
    concurrency: int = setting(
        Whole(1, 4096), "calls in flight at most", default=64, flag="--concurrency", metavar="N"
    )
    now: int | None = setting(
        Moment(), "the clock for task ages (default: the run's start)", flag="--now",
        metavar="ISO8601", identity=True,
    )  # fmt: skip
    resume: bool = setting(
        Flag(), "continue the newest unfinished run", default=False, flag="--resume"
    )
    method: str = setting(
        Choice(("POST", "GET"), upper=True), "HTTP method of every call", default="POST",
        flag="--method", metavar="POST|GET",
    )  # fmt: skip
    request_timeout: float = setting(
        _SECONDS, "seconds per attempt, connect included", default=30.0,
        flag="--request-timeout", metavar="S",
    )  # fmt: skip
    connect_timeout: float = setting(
        _SECONDS, "seconds to connect", default=10.0, flag="--connect-timeout", metavar="S"
    )
    retry_attempts: int = setting(
        Whole(1, 100), "attempts per call, the first included", default=8,
        flag="--retry-attempts", metavar="N",
    )  # fmt: skip
    retry_wait_initial: float = setting(
        Number(0, 60), "seconds before the first retry (doubling, with jitter)", default=0.2
    )
    retry_wait_max: float = setting(
        Number(0, 600), "the longest wait between two attempts, seconds", default=10.0
    )
    log_format: str = setting(
        Choice(("text", "json")), "progress lines when not on a terminal", default="text",
        flag="--log-format", metavar="text|json",
    )  # fmt: skip
    metrics: Path | None = setting(
        PathValue(), "write a Prometheus textfile here", flag="--metrics", metavar="PATH"
    )
    min_coverage: float = setting(
        Number(0, 1), "share of devices (0..1) that must get a definite answer, else exit 4 "
        "and LATEST stays on the last run that had it", default=0.95, flag="--min-coverage",
        metavar="F",
    )  # fmt: skip
    commit_every: int = setting(
        Whole(1, 1_000_000), "devices per durable commit: a killed run redoes at most this many",
        default=1000, flag="--commit-every", metavar="N",
    )  # fmt: skip
    call_timeout: float = setting(
        _SECONDS, "seconds one call may take, its retries and throttled waits included",
        default=120.0,
    )  # fmt: skip
    max_server_wait: float = setting(
        _SECONDS, "the longest pause a server's retry-after hint may impose, seconds",
        default=60.0,
    )  # fmt: skip
    commit_interval: float = setting(
        _SECONDS, "seconds between durable commits: a killed run loses at most about this much",
        default=1.0, flag="--commit-interval", metavar="S",
    )  # fmt: skip
    allow_empty_device_list: bool = setting(
        Flag(), "run even when the device list holds no device (else exit 2: a truncated export?)",
        default=False, flag="--allow-empty-device-list",
    )  # fmt: skip
    cancel_statuses: tuple[str, ...] = setting(
        Choices(tuple(UNFINISHED_STATUSES), upper=True), "task statuses `cancel` plans "
        "(default: the ones the platform cancels; it leaves IN_PROGRESS upgrading)",
        default=tuple(map(str, CANCELLABLE_STATUSES)), flag="--cancel-statuses", metavar="S,S",
    )  # fmt: skip
    iot_instance_id: str | None = setting(
        Text(), "the IoT instance id sent as IotInstanceId on every call (instances that have "
        "an id require it)", flag="--iot-instance-id", metavar="ID", identity=True,
    )  # fmt: skip
    tasks_from: str = setting(
        Choice(tuple(TasksFrom)), "where unfinished tasks are read: per device, from the jobs' "
        "listings (calls grow with jobs and tasks, not devices), or both, compared",
        default=TasksFrom.DEVICES.value, flag="--tasks-from", metavar="devices|jobs|both",
        identity=True,
    )  # fmt: skip
    audit: tuple[str, ...] = setting(
        Choices(AUDITS), "what a run audits: `tasks` alone makes no module-version call (the "
        "rules that need versions are skipped)", default=AUDITS, flag="--audit",
        metavar="modules,tasks", identity=True,
    )  # fmt: skip
    sample: str | None = setting(
        SampleSize(), "audit the module versions of a uniform random sample of the gate's "
        "scope only (the gate's drift share then has a 95 percent interval); tasks stay complete",
        flag="--sample", metavar="N|P%", identity=True,
    )  # fmt: skip
    series: str | None = setting(
        Text(), "the runs compared with each other (changes.parquet, history): default, the "
        "device list's absolute path", flag="--series", metavar="NAME",
    )  # fmt: skip
    gate: GateRules = setting(Section(GateRules), "the [gate] table", default=GateRules())

    @property
    def tasks_only(self) -> bool:
        """A tasks-only audit: no module versions are asked for."""
        return "modules" not in self.audit

    def quotas_per_action(self) -> dict[str, float] | None:
        """Quotas this run sets: `qps` for every action, then the `quotas` table (None: none)."""
        if self.qps is None and not self.quotas:
            return None
        quotas: dict[str, float] = dict.fromkeys(Action, self.qps) if self.qps is not None else {}
        quotas.update(self.quotas)
        return quotas


def load_job(path: str | Path) -> dict[str, Any]:
    """The settings a job file sets; relative paths resolve against the file's directory."""
    path = Path(path)
    return table_values(Settings, read_toml(path), where=str(path), base=path.parent)


def settings_from(job: Path | None, args: argparse.Namespace | None = None) -> Settings:
    """The job file's settings with the command line's on top, every required one present."""
    layers = [load_job(job)] if job is not None else []
    if args is not None:
        layers.append(option_values(Settings, args))
    settings = build(Settings, *layers)
    for name in missing_required(settings):
        flag = name.replace("_", "-")
        raise UsageError(f"no {name}: give --{flag} or `{name}` in the job file")
    where = f"{job}: " if job is not None else ""
    if "tasks" not in settings.audit:
        raise UsageError(f"{where}audit: must include tasks (use modules,tasks or tasks)")
    if settings.tasks_only and settings.gate.max_drift_percent is not None:
        raise UsageError(
            f"{where}gate.max_drift_percent: needs module versions, which audit = tasks "
            "does not read (add modules to audit, or drop the rule)"
        )
    if settings.sample is not None and settings.gate.max_drift_percent is None:
        raise UsageError(
            f"{where}sample: samples module versions for the gate's max_drift_percent, which "
            "is not set (set it, or drop the sample and audit every device)"
        )
    if settings.tasks_only and settings.sample is not None:
        raise UsageError(
            f"{where}sample: samples module versions, which audit = tasks does not read"
        )
    return settings


def parse_gate(table: Mapping[str, object], where: str = "job file") -> GateRules:
    """A `[gate]` table -> typed rules, by the same rows as the job file (`gate.KEY` errors)."""
    return Section(GateRules).from_table(table, where=where, base=Path(), prefix="gate.")


def settings_reference() -> str:
    """docs/SETTINGS.md, rendered from the rows (a test keeps the file equal to this)."""
    lines = [
        "# Settings",
        "",
        "Every `fleetaudit run` setting, generated from the rows in `fleetaudit/config.py`",
        "(a test keeps this file equal to them: `make settings-doc` rewrites it). The job-file",
        "key is the name; the command line overrides the job file.",
        "",
    ]
    for title, cls in (("run", Settings), ("[gate]", GateRules)):
        lines += [
            f"## {title}",
            "",
            "| key | option | accepts | default | what |",
            "|---|---|---|---|---|",
        ]
        for name, flag, accepts, help_text, default in describe(cls):
            shown = "" if default is None or name == "gate" else f"`{_shown(default)}`"
            option = f"`{flag}`" if flag else ""
            lines.append(f"| `{name}` | {option} | {accepts} | {shown} | {help_text} |")
        lines.append("")
    return "\n".join(lines)


def _shown(default: object) -> str:
    if isinstance(default, Mapping):
        return "{}"
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default).lower() if isinstance(default, bool) else str(default)
