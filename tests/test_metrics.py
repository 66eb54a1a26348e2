"""The Prometheus textfile: parsed back by `prometheus_client`'s exposition-format reader."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetaudit.metrics import render_failure_metrics, render_metrics, write_metrics
from fleetaudit.report.manifest import build_manifest

from helpers import Samples, metric_key, metric_samples

START_MS = 1_732_009_663_000


def _manifest(**changes: Any) -> dict[str, Any]:
    manifest = build_manifest(
        run_id="20241119T094743Z-00abcd",
        run_date="2024-11-19",
        started_at_ms=START_MS,
        finished_at_ms=START_MS + 90_500,
        status="complete",
        config={},
        device_counts={"ok": 97, "error": 2, "not_found": 1},
        finding_counts={("version_drift", "warning"): 5, ("version_drift", "info"): 2},
        api_stats={
            "ListOTAModuleVersionsByDevice": {"calls": 100, "retries": 4, "throttled": 3,
                                              "failures": 2},
            "QueryOTAFirmware": {"calls": 1, "retries": 0, "throttled": 0, "failures": 0},
        },
    )  # fmt: skip
    manifest["rows"] = {"devices": 100, "findings": 7}
    manifest.update(changes)
    return manifest


@pytest.fixture
def samples() -> Samples:
    """Every sample of the textfile rendered from a typical complete run's manifest."""
    return metric_samples(render_metrics(_manifest()))


def test_every_metric_is_a_prefixed_gauge_with_help() -> None:
    """Every metric has HELP and TYPE gauge lines and the fleetaudit_ prefix."""
    families = list(text_string_to_metric_families(render_metrics(_manifest())))
    assert families
    assert all(family.name.startswith("fleetaudit_") for family in families)
    assert {family.type for family in families} == {"gauge"}
    assert all(family.documentation for family in families)


def test_run_duration_and_last_success(samples: Samples) -> None:
    """The run's wall time and its finish time as Unix seconds are exported."""
    assert samples[metric_key("fleetaudit_run_duration_seconds")] == 90.5
    assert (
        samples[metric_key("fleetaudit_last_success_timestamp_seconds")]
        == (START_MS + 90_500) / 1000
    )


def test_devices_by_status(samples: Samples) -> None:
    """Devices are counted per audit status, zero statuses included."""
    assert samples[metric_key("fleetaudit_devices", status="ok")] == 97
    assert samples[metric_key("fleetaudit_devices", status="error")] == 2
    assert samples[metric_key("fleetaudit_devices", status="not_found")] == 1


def test_findings_by_type_and_severity(samples: Samples) -> None:
    """Findings are counted per (type, severity)."""
    assert samples[metric_key("fleetaudit_findings", type="version_drift", severity="warning")] == 5
    assert samples[metric_key("fleetaudit_findings", type="version_drift", severity="info")] == 2


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("fleetaudit_api_calls", 100),
        ("fleetaudit_api_retries", 4),
        ("fleetaudit_api_throttled", 3),
        ("fleetaudit_api_failures", 2),
    ],
)
def test_api_counters_per_action(samples: Samples, metric: str, value: int) -> None:
    """Calls, retries, throttles and failures are exported per action."""
    assert samples[metric_key(metric, action="ListOTAModuleVersionsByDevice")] == value


def test_coverage_and_rows(samples: Samples) -> None:
    """Coverage is the share not in error; rows are per table."""
    assert samples[metric_key("fleetaudit_coverage_ratio")] == pytest.approx(0.98)
    assert samples[metric_key("fleetaudit_rows", table="findings")] == 7


def test_label_values_are_escaped() -> None:
    """Quotes, backslashes and newlines in a label value survive a round trip."""
    nasty = 'a"b\\c\nd'
    samples = metric_samples(render_metrics(_manifest(run_id=nasty)))
    infos = [labels for name, labels in samples if name == "fleetaudit_run_info"]
    assert dict(infos[0])["run_id"] == nasty


def test_incomplete_manifest_has_no_last_success() -> None:
    """Only a complete run sets the last-success timestamp."""
    samples = metric_samples(render_metrics(_manifest(status="aborted")))
    assert metric_key("fleetaudit_last_success_timestamp_seconds") not in samples


def test_exit_code_is_exported_when_given() -> None:
    """The run's exit code (1 when the gate failed) is a metric when the caller passes it."""
    samples = metric_samples(render_metrics(_manifest(), exit_code=1))
    assert samples[metric_key("fleetaudit_run_exit_code")] == 1


def test_write_metrics_replaces_the_file_whole(tmp_path: Path) -> None:
    """The textfile holds exactly the rendering, and no temporary file is left beside it."""
    path = tmp_path / "textfile" / "fleetaudit.prom"
    path.parent.mkdir()
    path.write_text("stale\n", encoding="utf-8")
    manifest: Mapping[str, Any] = _manifest()
    write_metrics(path, render_metrics(manifest))
    assert path.read_text(encoding="utf-8") == render_metrics(manifest)
    assert [p.name for p in path.parent.iterdir()] == ["fleetaudit.prom"]


def test_an_untrusted_run_reports_the_trusted_run_as_last_success() -> None:
    """A run below min_coverage is no success: the last success is the run LATEST names."""
    earlier = _manifest(finished_at="2024-11-18T09:00:00Z")
    untrusted = _manifest(coverage_ok=False)
    samples = metric_samples(render_metrics(untrusted, exit_code=4, last_success=earlier))
    key = metric_key("fleetaudit_last_success_timestamp_seconds")
    assert samples[key] == 1731920400
    assert key not in metric_samples(render_metrics(untrusted, exit_code=4))


def test_failure_metrics_name_the_exit_code_the_reason_and_the_last_success() -> None:
    """A run that published nothing still writes its exit code and when and why it failed."""
    text = render_failure_metrics(
        exit_code=3, failed_at=1732010000.5, reason="AuthError", last_success=_manifest()
    )
    samples = metric_samples(text)
    assert samples[metric_key("fleetaudit_run_exit_code")] == 3
    assert samples[metric_key("fleetaudit_run_failure_timestamp_seconds", reason="AuthError")] == (
        1732010000.5
    )
    assert (
        samples[metric_key("fleetaudit_last_success_timestamp_seconds")]
        == (START_MS + 90_500) / 1000
    )
