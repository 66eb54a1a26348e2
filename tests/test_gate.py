"""The job's [gate]: parsing, each rule over real Arrow tables, reading a run, job files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetaudit.audit.sampling import GateSample
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
    staged_gate_record,
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


def _device(
    name: str, product: str = "pkA", status: str = "ok", module_count: int | None = 1
) -> dict[str, object]:
    """A device row; module_count None: its versions were not read (tasks-only, unsampled)."""
    return {
        "product_key": product,
        "device_name": name,
        "audit_status": status,
        "module_count": module_count,
    }


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


# ---------------------------------------------------------------------------- sampled gates


def _sampled_tables(drifting: int, sampled: int, unsampled: int) -> dict[str, pa.Table]:
    devices = [_device(f"s{i}") for i in range(sampled)]
    devices += [_device(f"u{i}", module_count=None) for i in range(unsampled)]
    findings = [_finding("version_drift", "warning", f"s{i}") for i in range(drifting)]
    return _tables(findings=findings, devices=devices)


SAMPLE = GateSample("200", seed=1, population=1000, devices=frozenset())


@pytest.mark.parametrize(
    ("bound", "trips"), [("lower", False), ("estimate", True), ("upper", True)]
)
def test_sampled_drift_trips_on_the_chosen_bound(bound: str, trips: bool) -> None:
    """10 of 200 sampled of 1000 drift: 5.0% (3.1-8.6%); a 4% limit trips on the estimate,
    not the lower bound, and the reason names the interval and the bound."""
    tables = _sampled_tables(drifting=10, sampled=200, unsampled=800)
    rules = _rules(max_drift_percent=4, product_key="pkA", drift_bound=bound)
    violations = check_gate(rules, tables, SAMPLE)
    assert bool(violations) is trips
    if violations:
        assert "5.0% (3.1-8.6%)" in violations[0].reason
        assert f"drift_bound = {bound}" in violations[0].reason


def test_devices_whose_versions_were_not_read_do_not_dilute_the_drift_share() -> None:
    """Unsampled (or tasks-only) devices are not counted: 10 of 100 is 10%, not 10 of 1000."""
    tables = _sampled_tables(drifting=10, sampled=100, unsampled=900)
    [violation] = check_gate(_rules(max_drift_percent=5), tables)
    assert "10 of 100 devices" in violation.reason


def test_a_sampled_gate_records_and_prints_its_interval() -> None:
    """The manifest's gate gains the sample and its drift interval; the passing line says it."""
    tables = _sampled_tables(drifting=10, sampled=200, unsampled=800)
    batches = {name: table.to_batches() for name, table in tables.items()}
    rules = _rules(max_drift_percent=4, product_key="pkA")
    record = staged_gate_record(rules, batches.__getitem__, SAMPLE)
    assert record["verdict"] == "passed"
    assert record["sample"] == {
        "sample": "200",
        "size": 0,
        "population": 1000,
        "seed": 1,
        "audited": 200,
        "drifting": 10,
        "drift": "5.0% (3.1-8.6%)",
        "drift_bound": "lower",
    }
    text = format_gate(record)
    assert text is not None
    assert "sampled drift 5.0% (3.1-8.6%) from 200 of 1000 devices" in text
    assert "lower bound" in text


def test_a_sample_of_the_whole_scope_is_judged_exactly() -> None:
    """A sample as large as its scope is the exact share: 30 of 500 (6%) trips a 5% limit
    even on the lower bound, as a full audit would."""
    tables = _sampled_tables(drifting=30, sampled=500, unsampled=0)
    whole = GateSample("2000", seed=1, population=500, devices=frozenset())
    [violation] = check_gate(_rules(max_drift_percent=5), tables, whole)
    assert "6.0% (6.0-6.0%)" in violation.reason


def test_drifting_devices_that_are_not_ok_do_not_count() -> None:
    """A device whose module list came back but another call failed drifts without being in
    the denominator: it is left out of both (and the interval is not broken by it)."""
    devices = [_device("ok1")] + [_device(f"err{i}", status="error") for i in range(3)]
    findings = [_finding("version_drift", "warning", f"err{i}") for i in range(3)]
    tables = _tables(findings=findings, devices=devices)
    record = staged_gate_record(
        _rules(max_drift_percent=50),
        {name: table.to_batches() for name, table in tables.items()}.__getitem__,
        SAMPLE,
    )
    assert (record["sample"]["drifting"], record["sample"]["audited"]) == (0, 1)
    assert record["verdict"] == "passed"
