"""The text summary of a finished run."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetaudit.models import CallFailure, DeviceAudit, Finding, ModuleVersion
from fleetaudit.report.manifest import build_manifest
from fleetaudit.report.staging import RunStaging
from fleetaudit.report.summary import run_summary, summarize_run
from fleetaudit.terms import Action, AuditStatus, FindingType, Severity

START_MS = 1_732_009_663_000
RUN_ID = "20241119T094743Z-00abcd"


def _finding(device: str | None, finding_type: str, severity: str) -> Finding:
    return Finding(
        FindingType(finding_type),
        Severity(severity),
        "pkA",
        device,
        None,
        "default",
        "1.0",
        "1.1",
        None,
        None,
        None,
        None,
        None,
        "A finding.",
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    staging = RunStaging.create(tmp_path, RUN_ID, {})
    staging.append(
        "devices",
        [DeviceAudit("pkA", f"d{i}", None, AuditStatus.OK, 1, 0, None) for i in range(9)]
        + [
            DeviceAudit(
                "pkA", "gone", None, AuditStatus.NOT_FOUND, 0, 0, "iot.device.NotExistedDevice"
            )
        ],
    )
    staging.append(
        "module_versions",
        [ModuleVersion("pkA", f"d{i}", None, "default", "1.1") for i in range(7)]
        + [ModuleVersion("pkA", f"d{i}", None, "default", "1.0") for i in (7, 8)]
        + [ModuleVersion("pkB", "x", None, "ble", "2.4.1")],
    )
    staging.append(
        "findings",
        [
            _finding("d7", "version_drift", "info"),
            _finding("d8", "version_drift", "info"),
            _finding("d8", "stalled_task", "warning"),
            _finding("d3", "task_src_mismatch", "critical"),
            _finding(None, "module_missing", "warning"),
        ],
    )
    failure = CallFailure(Action.QUERY_FIRMWARE, None, None, "7", None, "E", "m", 500, 3, None)
    staging.append("errors", [failure])
    manifest = build_manifest(
        run_id=RUN_ID,
        run_date="2024-11-19",
        started_at_ms=START_MS,
        finished_at_ms=START_MS + 125_000,
        status="complete",
        config={},
        device_counts={"ok": 9, "not_found": 1},
        finding_counts={},
        api_stats={
            "QueryOTAFirmware": {
                "calls": 3,
                "retries": 2,
                "throttled": 1,
                "failures": 1,
                "latency_ms_p50": 4.2,
                "latency_ms_p95": 9.0,
                "latency_ms_p99": None,
            }
        },
    )
    return staging.finalize(manifest)


def _lines_after(text: str, heading: str) -> list[str]:
    block = text.split(heading, 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[1:]


def test_devices_by_status(run_dir: Path) -> None:
    """The summary counts devices per audit status with shares."""
    text = summarize_run(run_dir)
    assert "Devices: 10" in text
    assert any(line.split()[:2] == ["ok", "9"] for line in _lines_after(text, "Devices: 10"))
    assert any(line.split()[:2] == ["not_found", "1"] for line in text.splitlines())


def test_findings_by_type_and_severity(run_dir: Path) -> None:
    """Each finding type gets a line with counts per severity and a total."""
    text = summarize_run(run_dir)
    lines = _lines_after(text, "Findings: 5")
    drift = next(line for line in lines if line.split()[0] == "version_drift")
    assert drift.split()[1:] == ["0", "0", "2", "2"]  # critical, warning, info, total


def test_worst_devices_critical_first(run_dir: Path) -> None:
    """The worst-devices list puts critical findings first, then the most findings."""
    lines = _lines_after(summarize_run(run_dir, worst=2), "Worst devices")
    assert [line.split()[0] for line in lines] == ["pkA/d3", "pkA/d8"]


def test_version_distribution_per_module(run_dir: Path) -> None:
    """Drift per (product, module) shows devices per version; full agreement is left out."""
    text = summarize_run(run_dir)
    assert "pkA/default: 9 devices, 2 drift findings" in text
    assert "1.1 x7 (77.8%), 1.0 x2 (22.2%)" in text
    assert "pkB/ble" not in text


def test_api_and_wall_time(run_dir: Path) -> None:
    """API statistics per action and the wall time come from the manifest."""
    text = summarize_run(run_dir)
    row = next(line for line in text.splitlines() if line.strip().startswith("QueryOTAFirmware"))
    assert row.split()[1:] == ["3", "2", "1", "1", "4.2", "9.0", "-"]
    assert "wall time 2m 5s" in text


def test_says_where_reports_are(run_dir: Path) -> None:
    """The summary names the run directory and the rows of each file."""
    text = summarize_run(run_dir)
    assert f"Reports in {run_dir}" in text
    assert any(line.split() == ["errors.parquet", "1", "rows"] for line in text.splitlines())


def test_plain_text(run_dir: Path) -> None:
    """No colour codes, and every line but the run directory's fits in 100 columns."""
    text = summarize_run(run_dir)
    assert "\x1b" not in text
    assert all(len(line) <= 100 for line in text.splitlines() if str(run_dir) not in line)


def test_empty_run(tmp_path: Path) -> None:
    """A run with no rows still summarizes."""
    run_dir = RunStaging.create(tmp_path, RUN_ID, {}).finalize({"run_id": RUN_ID})
    text = summarize_run(run_dir)
    assert "Devices: 0" in text
    assert "Findings: none" in text


def test_run_summary_is_short_and_says_how_to_query(run_dir: Path) -> None:
    """The end-of-run summary leaves out the long sections and gives a query over every run."""
    text = run_summary(run_dir)
    assert "Worst devices" not in text
    assert "Versions per" not in text
    assert f"FROM '{run_dir.parent.parent}/run_date=*/run_id=*/findings.parquet'" in text


def test_drift_against_the_policy_names_the_target(tmp_path: Path) -> None:
    """A module drifting from its policy target shows that target; majority drift does not."""
    staging = RunStaging.create(tmp_path, RUN_ID, {})
    staging.append(
        "module_versions",
        [ModuleVersion("pkA", "d1", None, "default", "1.0")]
        + [ModuleVersion("pkA", f"d{i}", None, "ble", "2.0") for i in (1, 2)]
        + [ModuleVersion("pkA", "d3", None, "ble", "1.9")],
    )
    against_target = Finding(
        FindingType.VERSION_DRIFT,
        Severity.WARNING,
        "pkA",
        "d1",
        None,
        "default",
        "1.0",
        "1.2",
        None,
        None,
        None,
        None,
        None,
        "Module default runs 1.0; the policy expects 1.2.",
    )
    against_majority = Finding(
        FindingType.VERSION_DRIFT,
        Severity.INFO,
        "pkA",
        "d3",
        None,
        "ble",
        "1.9",
        "2.0",
        None,
        None,
        None,
        None,
        None,
        "Module ble runs 1.9, but the fleet majority is 2.0.",
    )
    staging.append("findings", [against_target, against_majority])
    text = summarize_run(staging.finalize({"run_id": RUN_ID}))
    assert "pkA/default: 1 devices, 1 drift findings, target 1.2" in text
    assert "pkA/ble: 3 devices, 1 drift findings\n" in text
