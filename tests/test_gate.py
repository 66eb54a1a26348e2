"""The job's [gate]: parsing, each rule over real Arrow tables, reading a run, job files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetaudit.config import GateRules, load_job, parse_gate
from fleetaudit.errors import UsageError
from fleetaudit.gate import (
    GateViolation,
    check_gate,
    evaluate_batches,
    evaluate_gate,
    format_gate,
    format_violations,
    gate_record,
)
from fleetaudit.report.schema import TABLES, rows_to_batch

JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"


def _finding(
    finding_type: str, severity: str, device: str | None, module: str = "default"
) -> dict[str, object]:
    return {
        "finding_type": finding_type,
        "severity": severity,
        "product_key": "pkA",
        "device_name": device,
        "module_name": module,
    }


def _device(name: str, product: str = "pkA", status: str = "ok") -> dict[str, object]:
    return {"product_key": product, "device_name": name, "audit_status": status}


def _task(device: str, module: str = "default", product: str = "pkA") -> dict[str, object]:
    return {
        "task_id": f"t-{device}-{module}",
        "product_key": product,
        "device_name": device,
        "module_name": module,
        "task_status": "QUEUED",
    }


def _tables(
    findings: Sequence[object] = (),
    devices: Sequence[object] = (),
    tasks: Sequence[object] = (),
    changes: Sequence[object] = (),
) -> dict[str, pa.Table]:
    rows = {"findings": findings, "devices": devices, "tasks": tasks, "changes": changes}
    return {name: pa.Table.from_batches([rows_to_batch(name, r)]) for name, r in rows.items()}


def _rules(**values: object) -> GateRules:
    return parse_gate(values)


# ---------------------------------------------------------------------------- parsing


def test_parse_gate_reads_every_key() -> None:
    """Every [gate] key is parsed into its typed field."""
    rules = parse_gate(
        {
            "max_critical": 0,
            "max_stalled_tasks": 5,
            "max_drift_percent": 2,
            "fail_on_unfinished_tasks": True,
            "product_key": "pkA",
            "module": "ble",
            "show_devices": 3,
        }
    )
    assert rules == GateRules(0, 5, 2.0, True, "pkA", "ble", 3)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"max_warnings": 1}, "max_warnings"),
        ({"max_critical": -1}, "max_critical"),
        ({"max_critical": True}, "max_critical"),
        ({"max_stalled_tasks": 1.5}, "max_stalled_tasks"),
        ({"max_drift_percent": 101}, "max_drift_percent"),
        ({"fail_on_unfinished_tasks": "yes"}, "fail_on_unfinished_tasks"),
        ({"product_key": ""}, "product_key"),
        ({"module": "ble"}, "module"),
    ],
)
def test_parse_gate_errors_name_key(table: Mapping[str, object], key: str) -> None:
    """A bad [gate] key or value is a UsageError naming where and `gate.KEY`."""
    with pytest.raises(UsageError, match=rf"^job\.toml: gate\.{key}: "):
        parse_gate(table, where="job.toml")


def test_load_job_validates_gate(tmp_path: Path) -> None:
    """A job file with a bad [gate] key fails to load, naming the file and the key."""
    path = tmp_path / "job.toml"
    path.write_text("[gate]\nmax_critcal = 0\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"job\.toml: gate\.max_critcal: unknown key"):
        load_job(path)


def test_empty_gate_is_disabled() -> None:
    """A gate without thresholds trips nothing, whatever the run found."""
    tables = _tables(findings=[_finding("task_src_mismatch", "critical", "d1")])
    assert not _rules().enabled
    assert check_gate(_rules(), tables) == []


# ---------------------------------------------------------------------------- rules


def test_critical_finding_trips_max_critical_zero() -> None:
    """One critical finding trips `max_critical = 0`, naming its device."""
    tables = _tables(
        findings=[
            _finding("task_src_mismatch", "critical", "d1"),
            _finding("stalled_task", "warning", "d2"),
        ]
    )
    [violation] = check_gate(_rules(max_critical=0), tables)
    assert violation == GateViolation(
        "max_critical", "1 critical findings (at most 0)", ("pkA/d1",)
    )


def test_stalled_tasks_at_the_limit_pass() -> None:
    """As many stalled tasks as the limit allows does not trip it."""
    findings = [_finding("stalled_task", "warning", f"d{i}") for i in range(3)]
    assert check_gate(_rules(max_stalled_tasks=3), _tables(findings=findings)) == []


def test_stalled_tasks_over_the_limit_trip_and_list_devices_capped() -> None:
    """Over the limit trips; devices are listed up to `show_devices`, the rest counted."""
    findings = [_finding("stalled_task", "warning", f"d{i}") for i in range(4)]
    [violation] = check_gate(
        _rules(max_stalled_tasks=3, show_devices=2), _tables(findings=findings)
    )
    assert (violation.rule, violation.devices, violation.more_devices) == (
        "max_stalled_tasks",
        ("pkA/d0", "pkA/d1"),
        2,
    )


def test_drift_percent_counts_distinct_devices_of_the_product() -> None:
    """Drift is distinct drifting devices over audited ok devices of the scoped product."""
    devices = [_device(f"d{i}") for i in range(10)] + [_device("x", product="pkB")]
    findings = [
        _finding("version_drift", "warning", "d1"),
        _finding("version_drift", "warning", "d1", module="ble"),
        _finding("version_drift", "info", "d2"),
        {**_finding("version_drift", "warning", "x"), "product_key": "pkB"},
    ]
    tables = _tables(findings=findings, devices=devices)
    [violation] = check_gate(_rules(max_drift_percent=10, product_key="pkA"), tables)
    assert violation.reason == "2 of 10 devices of product pkA drifting (20.0%, at most 10%)"
    assert violation.devices == ("pkA/d1", "pkA/d2")


def test_drift_within_limit_passes() -> None:
    """Drift at or under the percentage passes."""
    devices = [_device(f"d{i}") for i in range(10)]
    findings = [_finding("version_drift", "warning", "d1")]
    rules = _rules(max_drift_percent=10, product_key="pkA")
    assert check_gate(rules, _tables(findings=findings, devices=devices)) == []


def test_drift_scope_by_module_ignores_other_modules() -> None:
    """With a module in scope, drift of other modules does not count."""
    devices = [_device(f"d{i}") for i in range(4)]
    findings = [_finding("version_drift", "warning", "d1", module="ble")]
    rules = _rules(max_drift_percent=0, product_key="pkA", module="default")
    assert check_gate(rules, _tables(findings=findings, devices=devices)) == []


def test_unfinished_task_for_the_module_trips() -> None:
    """Any device of the scoped product and module with an unfinished task trips the rule."""
    tasks = [_task("d1"), _task("d2", module="ble"), _task("d3", product="pkB")]
    rules = _rules(fail_on_unfinished_tasks=True, product_key="pkA", module="default")
    [violation] = check_gate(rules, _tables(tasks=tasks))
    assert violation.rule == "fail_on_unfinished_tasks"
    assert violation.devices == ("pkA/d1",)
    assert "product pkA module default" in violation.reason


def test_unfinished_tasks_elsewhere_pass() -> None:
    """Unfinished tasks of other modules do not block this module's rollout."""
    tasks = [_task("d2", module="ble")]
    rules = _rules(fail_on_unfinished_tasks=True, product_key="pkA", module="default")
    assert check_gate(rules, _tables(tasks=tasks)) == []


def test_several_rules_trip_in_order() -> None:
    """Every tripped rule is reported, in the order the gate lists them."""
    tables = _tables(findings=[_finding("stalled_task", "critical", "d1")], tasks=[_task("d1")])
    rules = _rules(max_critical=0, max_stalled_tasks=0, fail_on_unfinished_tasks=True)
    assert [v.rule for v in check_gate(rules, tables)] == [
        "max_critical",
        "max_stalled_tasks",
        "fail_on_unfinished_tasks",
    ]


# ---------------------------------------------------------------------------- run dir, text


def test_evaluate_gate_reads_the_run_directory(tmp_path: Path) -> None:
    """The gate reads a run's Parquet files (every table of a complete run is present)."""
    tables = _tables(findings=[_finding("task_src_mismatch", "critical", "d9")])
    for name in TABLES:
        table = tables.get(name, pa.Table.from_batches([rows_to_batch(name, [])]))
        pq.write_table(table, tmp_path / f"{name}.parquet")
    [violation] = evaluate_gate(_rules(max_critical=0), tmp_path)
    assert violation.devices == ("pkA/d9",)


def test_format_violations_names_rule_reason_and_devices() -> None:
    """The printed gate says which rule tripped, why, and the devices behind it."""
    text = format_violations(
        [GateViolation("max_critical", "2 critical findings (at most 0)", ("pkA/d1",), 1)]
    )
    assert text.splitlines() == [
        "gate: FAILED (1 rule tripped)",
        "  max_critical: 2 critical findings (at most 0)",
        "    devices: pkA/d1 and 1 more",
    ]


def test_evaluate_batches_agrees_with_the_tables() -> None:
    """A staged run's batches (every column) give the same verdict as its tables."""
    tables = _tables(findings=[_finding("task_src_mismatch", "critical", "d9")])
    batches = {name: table.to_batches() for name, table in tables.items()}
    rules = _rules(max_critical=0)
    assert evaluate_batches(rules, batches.__getitem__) == check_gate(rules, tables)


def test_gate_record_lists_the_rules_checked_and_the_verdict() -> None:
    """The manifest's record names the set rules, the scope, and each violation."""
    rules = _rules(max_critical=0, fail_on_unfinished_tasks=True, product_key="pkA")
    violation = GateViolation("max_critical", "1 critical findings (at most 0)", ("pkA/d1",))
    assert gate_record(rules, [violation]) == {
        "verdict": "failed",
        "rules": {"max_critical": 0, "fail_on_unfinished_tasks": True},
        "scope": "product pkA",
        "violations": [
            {
                "rule": "max_critical",
                "reason": "1 critical findings (at most 0)",
                "devices": ["pkA/d1"],
                "more_devices": 0,
            }
        ],
    }
    assert gate_record(rules, [])["verdict"] == "passed"
    assert gate_record(_rules(), [])["verdict"] == "none"


def test_format_gate_prints_a_passed_gate_on_one_line_with_its_rules() -> None:
    """A passing gate is one line naming every rule it checked and the scope."""
    rules = _rules(max_critical=0, max_drift_percent=5.5, fail_on_unfinished_tasks=True)
    assert format_gate(gate_record(rules, [])) == (
        "gate: passed (max_critical=0, max_drift_percent=5.5%, fail_on_unfinished_tasks; "
        "scope the fleet)"
    )


def test_format_gate_prints_nothing_without_rules_and_violations_when_failed() -> None:
    """No rules: nothing printed; failed: the same lines as format_violations."""
    assert format_gate(gate_record(_rules(), [])) is None
    violation = GateViolation("max_critical", "2 critical findings (at most 0)", ("pkA/d1",), 1)
    record = gate_record(_rules(max_critical=0), [violation])
    assert format_gate(record) == format_violations([violation])


def test_format_no_violations_says_passed() -> None:
    """With nothing tripped the gate says it passed."""
    assert format_violations([]) == "gate: passed"


# ---------------------------------------------------------------------------- job files


@pytest.mark.parametrize("path", sorted(JOBS_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_job_file_loads(path: Path) -> None:
    """Each job file in jobs/ is valid, gate included."""
    assert isinstance(load_job(path).get("gate", GateRules()), GateRules)
