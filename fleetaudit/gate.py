"""The job's `[gate]`: thresholds over a finished run's reports that make `run` exit 1.

A gate is read from the job file's `[gate]` table (`config.GateRules`), checked against the run's
findings, devices and tasks tables (`check_gate`, pure over Arrow tables; `evaluate_gate`
reads them from the run directory, `evaluate_batches` from a staged run), recorded in the
manifest by `gate_record` and printed from that record by `format_gate`:

    [gate]
    max_critical = 0               # more critical findings than this trips the gate
    max_stalled_tasks = 10         # more stalled_task findings than this
    max_new_critical = 0           # critical findings new since the previous run (changes)
    max_new = 50                   # findings new since the previous run
    max_drift_percent = 5.0        # more than this % of the scoped devices drifting
    fail_on_unfinished_tasks = true  # any scoped device with an unfinished task
    product_key = "a1B2c3D4e5F"    # scope of the drift and unfinished-task rules
    module = "default"             # (optional) narrower scope: one module
    show_devices = 10              # device names printed per tripped rule

The unfinished-task rule exists because the platform refuses a new OTA task for a device
that still has an unfinished one for the same module: a rollout would silently skip it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fleetaudit.audit.sampling import GateSample, wilson
from fleetaudit.config import GateRules
from fleetaudit.report.schema import schema_for
from fleetaudit.terms import AuditStatus, Change, FindingType, Severity

# The rules that can trip, in the order they are checked and printed.
RULES = (
    "max_critical",
    "max_stalled_tasks",
    "max_new_critical",
    "max_new",
    "max_drift_percent",
    "fail_on_unfinished_tasks",
)
_TABLE_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "findings": ("finding_type", "severity", "product_key", "device_name", "module_name"),
    "devices": ("product_key", "device_name", "audit_status", "module_count"),
    "tasks": ("product_key", "device_name", "module_name", "task_status"),
    "changes": ("change", "severity", "product_key", "device_name", "module_name"),
}


@dataclass(frozen=True, slots=True)
class GateViolation:
    """One tripped rule: its key, a one-line reason, and the first devices behind it."""

    rule: str
    reason: str
    devices: tuple[str, ...]  # "product_key/device_name", at most `show_devices`
    more_devices: int = 0  # devices behind the rule beyond those listed


# ---------------------------------------------------------------------------- checking


def evaluate_gate(rules: GateRules, run_dir: Path) -> list[GateViolation]:
    """The rules a finished run directory trips (reads only the columns the rules need)."""
    if not rules.enabled:
        return []
    tables = {}
    for name, columns in _TABLE_COLUMNS.items():
        path = run_dir / f"{name}.parquet"
        if path.is_file():
            tables[name] = pq.read_table(path, columns=list(columns))
        else:  # changes.parquet is new in schema 4: an older run has nothing new
            full = schema_for(name)
            tables[name] = pa.schema([full.field(column) for column in columns]).empty_table()
    return check_gate(rules, tables)


def evaluate_batches(
    rules: GateRules,
    batches: Callable[[str], Iterable[pa.RecordBatch]],
    sample: GateSample | None = None,
) -> list[GateViolation]:
    """The rules a run trips, its tables read as batches (`batches(table)`), only the
    columns the rules need kept: the pipeline judges a staged run before publishing it."""
    if not rules.enabled:
        return []
    return check_gate(rules, _gate_tables(batches), sample)


def staged_gate_record(
    rules: GateRules,
    batches: Callable[[str], Iterable[pa.RecordBatch]],
    sample: GateSample | None = None,
) -> dict[str, Any]:
    """The manifest's `gate` of a staged run: its verdict and, for a sampled gate, the
    drift share's interval (judged before publishing, so the first reader sees it)."""
    if not rules.enabled:
        return gate_record(rules, [])
    tables = _gate_tables(batches)
    record = gate_record(rules, check_gate(rules, tables, sample))
    if sample is not None:
        drifting, total, _ = drift_share(rules, tables["findings"], tables["devices"])
        record["sample"] = {
            **sample.record(),
            "audited": total,
            "drifting": drifting,
            "drift": str(wilson(drifting, total, sample.population)),
            "drift_bound": rules.drift_bound,
        }
    return record


def _gate_tables(batches: Callable[[str], Iterable[pa.RecordBatch]]) -> dict[str, pa.Table]:
    tables: dict[str, pa.Table] = {}
    for name, columns in _TABLE_COLUMNS.items():
        full = schema_for(name)
        schema = pa.schema([full.field(column) for column in columns])
        parts = [batch.select(list(columns)) for batch in batches(name)]
        tables[name] = pa.Table.from_batches(parts, schema=schema)
    return tables


def check_gate(
    rules: GateRules, tables: Mapping[str, pa.Table], sample: GateSample | None = None
) -> list[GateViolation]:
    """The rules that `tables` (findings, devices, tasks, changes) trip, in order (pure).

    With a `sample` the drift rule judges the sampled devices' share by its 95% interval.
    """
    findings = tables["findings"]
    violations: list[GateViolation] = []
    if rules.max_critical is not None:
        critical = findings.filter(pc.equal(findings["severity"], Severity.CRITICAL))
        if critical.num_rows > rules.max_critical:
            reason = f"{critical.num_rows} critical findings (at most {rules.max_critical})"
            violations.append(_violation(rules, "max_critical", reason, critical))
    if rules.max_stalled_tasks is not None:
        stalled = findings.filter(pc.equal(findings["finding_type"], FindingType.STALLED_TASK))
        if stalled.num_rows > rules.max_stalled_tasks:
            reason = f"{stalled.num_rows} stalled tasks (at most {rules.max_stalled_tasks})"
            violations.append(_violation(rules, "max_stalled_tasks", reason, stalled))
    new = _new_findings(tables.get("changes"))
    if rules.max_new_critical is not None:
        critical = new.filter(pc.equal(new["severity"], Severity.CRITICAL))
        if critical.num_rows > rules.max_new_critical:
            reason = (
                f"{critical.num_rows} new critical findings since the previous run "
                f"(at most {rules.max_new_critical})"
            )
            violations.append(_violation(rules, "max_new_critical", reason, critical))
    if rules.max_new is not None and new.num_rows > rules.max_new:
        reason = f"{new.num_rows} new findings since the previous run (at most {rules.max_new})"
        violations.append(_violation(rules, "max_new", reason, new))
    if rules.max_drift_percent is not None:
        drift = _drift_violation(
            rules, rules.max_drift_percent, findings, tables["devices"], sample
        )
        if drift is not None:
            violations.append(drift)
    if rules.fail_on_unfinished_tasks:
        tasks = _in_scope(rules, tables["tasks"])
        if tasks.num_rows:
            devices = _device_keys(tasks)
            reason = (
                f"{len(devices)} devices of {_scope_name(rules)} have unfinished tasks "
                "(the platform refuses a new task for them)"
            )
            violations.append(_violation(rules, "fail_on_unfinished_tasks", reason, tasks))
    return violations


def _new_findings(changes: pa.Table | None) -> pa.Table:
    """The changes table's `new` rows (none when the run has no changes table)."""
    if changes is None:
        full = schema_for("changes")
        columns = _TABLE_COLUMNS["changes"]
        return pa.schema([full.field(column) for column in columns]).empty_table()
    return changes.filter(pc.equal(changes["change"], Change.NEW))


def drift_share(
    rules: GateRules, findings: pa.Table, devices: pa.Table
) -> tuple[int, int, pa.Table]:
    """(drifting devices, devices whose versions were read, the drift findings) in scope."""
    audited = _in_scope(rules, devices, module_column=None)
    audited = audited.filter(
        pc.and_(
            pc.equal(audited["audit_status"], AuditStatus.OK),
            pc.is_valid(audited["module_count"]),  # tasks-only and unsampled devices: null
        )
    )
    drift = _in_scope(
        rules, findings.filter(pc.equal(findings["finding_type"], FindingType.VERSION_DRIFT))
    )
    # Only devices counted in the denominator count as drifting: a device whose module list
    # came back but whose other call failed has drift findings and is not `ok`.
    read = set(_device_keys(audited))
    drifting = sum(1 for key in _device_keys(drift) if key in read)
    return drifting, len(read), drift


def _drift_violation(
    rules: GateRules,
    limit: float,
    findings: pa.Table,
    devices: pa.Table,
    sample: GateSample | None,
) -> GateViolation | None:
    drifting, total, drift = drift_share(rules, findings, devices)
    if sample is None:
        percent = 100.0 * drifting / total if total else 0.0
        if percent <= limit:
            return None
        reason = (
            f"{drifting} of {total} devices of {_scope_name(rules)} drifting "
            f"({percent:.1f}%, at most {limit:g}%)"
        )
        return _violation(rules, "max_drift_percent", reason, drift)
    interval = wilson(drifting, total, sample.population)
    bound = {"lower": interval.low, "estimate": interval.share, "upper": interval.high}
    judged = 100.0 * bound[rules.drift_bound]
    if judged <= limit:
        return None
    reason = (
        f"{interval} of {_scope_name(rules)} drifting, from a sample of {total} of "
        f"{sample.population} devices ({drifting} drifting); the interval's "
        f"{rules.drift_bound} {'bound ' if rules.drift_bound != 'estimate' else ''}"
        f"{judged:.1f}% is over {limit:g}% (drift_bound = {rules.drift_bound})"
    )
    return _violation(rules, "max_drift_percent", reason, drift)


def _in_scope(
    rules: GateRules, table: pa.Table, module_column: str | None = "module_name"
) -> pa.Table:
    if rules.product_key is not None:
        table = table.filter(pc.equal(table["product_key"], rules.product_key))
    if rules.module is not None and module_column is not None:
        table = table.filter(pc.equal(table[module_column], rules.module))
    return table


def _scope_name(rules: GateRules) -> str:
    if rules.product_key is None:
        return "the fleet"
    if rules.module is None:
        return f"product {rules.product_key}"
    return f"product {rules.product_key} module {rules.module}"


def _device_keys(table: pa.Table) -> list[str]:
    """Distinct `product_key/device_name` of a table's rows, in first-seen order."""
    keys = table.select(["product_key", "device_name"]).to_pydict()
    names = (
        f"{product}/{device}"
        for product, device in zip(keys["product_key"], keys["device_name"], strict=True)
        if device is not None  # fleet-wide findings name no device
    )
    return list(dict.fromkeys(names))


def _violation(rules: GateRules, rule: str, reason: str, rows: pa.Table) -> GateViolation:
    devices = _device_keys(rows)
    shown = tuple(devices[: rules.show_devices])
    return GateViolation(rule, reason, shown, len(devices) - len(shown))


# ---------------------------------------------------------------------------- the verdict


def gate_record(rules: GateRules, violations: list[GateViolation]) -> dict[str, Any]:
    """The gate's verdict as manifest.json records it (`verdict` is `none` without rules)."""
    # `is`, not `in (None, False)`: `max_critical = 0` is the commonest rule, and 0 == False.
    values = {rule: getattr(rules, rule) for rule in RULES}
    set_rules = {rule: v for rule, v in values.items() if v is not None and v is not False}
    verdict = "failed" if violations else "passed" if set_rules else "none"
    return {
        "verdict": verdict,
        "rules": set_rules,
        "scope": _scope_name(rules),
        "violations": [
            {
                "rule": v.rule,
                "reason": v.reason,
                "devices": list(v.devices),
                "more_devices": v.more_devices,
            }
            for v in violations
        ],
    }


def format_gate(record: Mapping[str, Any]) -> str | None:
    """What `run` prints of a manifest's gate record: one line when it passed (with the
    rules checked), every tripped rule when it failed, nothing without rules; a sampled
    gate adds its drift share and interval."""
    verdict = record.get("verdict")
    sample = record.get("sample")
    sampled = (
        f"\ngate: sampled drift {sample['drift']} from {sample['audited']} of "
        f"{sample['population']} devices (max_drift_percent is checked against the "
        f"{sample['drift_bound']} bound)"
        if isinstance(sample, Mapping)
        else ""
    )
    if verdict == "passed":
        rules = ", ".join(_rule_text(rule, value) for rule, value in record["rules"].items())
        return f"gate: passed ({rules}; scope {record['scope']}){sampled}"
    if verdict != "failed":
        return None
    return (
        format_violations(
            [
                GateViolation(v["rule"], v["reason"], tuple(v["devices"]), v["more_devices"])
                for v in record["violations"]
            ]
        )
        + sampled
    )


def _rule_text(rule: str, value: object) -> str:
    if isinstance(value, bool):
        return rule
    if rule == "max_drift_percent":
        return f"{rule}={value:g}%" if isinstance(value, float | int) else f"{rule}={value}"
    return f"{rule}={value}"


def format_violations(violations: list[GateViolation]) -> str:
    """The lines `run` prints when the gate fails: each rule, its reason and its devices."""
    if not violations:
        return "gate: passed"
    rules = "rule" if len(violations) == 1 else "rules"
    lines = [f"gate: FAILED ({len(violations)} {rules} tripped)"]
    for violation in violations:
        lines.append(f"  {violation.rule}: {violation.reason}")
        if violation.devices:
            more = f" and {violation.more_devices} more" if violation.more_devices else ""
            lines.append(f"    devices: {', '.join(violation.devices)}{more}")
    return "\n".join(lines)
