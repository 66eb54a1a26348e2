"""The Prometheus textfile: parsed back by a small exposition-format reader in this file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetaudit.metrics import render_metrics, write_metrics
from fleetaudit.report.manifest import build_manifest

START_MS = 1_732_009_663_000
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Samples keyed by (name, labels) and the TYPE of each metric; fails on a bad line."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not an exposition line: {line!r}"
        raw = match.group("labels") or ""
        labels = frozenset((k, _unescape(v)) for k, v in _LABEL.findall(raw))
        assert match.group("name") in types, f"sample before its TYPE: {line!r}"
        samples[(match.group("name"), labels)] = float(match.group("value"))
    return samples, types


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


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
    return parse(render_metrics(_manifest()))[0]


def test_every_metric_is_a_prefixed_gauge_with_help() -> None:
    """Every metric has HELP and TYPE gauge lines and the fleetaudit_ prefix."""
    text = render_metrics(_manifest())
    _, types = parse(text)
    assert types
    assert all(name.startswith("fleetaudit_") for name in types)
    assert set(types.values()) == {"gauge"}
    assert all(f"# HELP {name} " in text for name in types)


def test_run_duration_and_last_success(samples: Samples) -> None:
    """The run's wall time and its finish time as Unix seconds are exported."""
    assert samples[_key("fleetaudit_run_duration_seconds")] == 90.5
    assert samples[_key("fleetaudit_last_success_timestamp_seconds")] == (START_MS + 90_500) / 1000


def test_devices_by_status(samples: Samples) -> None:
    """Devices are counted per audit status, zero statuses included."""
    assert samples[_key("fleetaudit_devices", status="ok")] == 97
    assert samples[_key("fleetaudit_devices", status="error")] == 2
    assert samples[_key("fleetaudit_devices", status="not_found")] == 1


def test_findings_by_type_and_severity(samples: Samples) -> None:
    """Findings are counted per (type, severity)."""
    assert samples[_key("fleetaudit_findings", type="version_drift", severity="warning")] == 5
    assert samples[_key("fleetaudit_findings", type="version_drift", severity="info")] == 2


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
    assert samples[_key(metric, action="ListOTAModuleVersionsByDevice")] == value


def test_coverage_and_rows(samples: Samples) -> None:
    """Coverage is the share not in error; rows are per table."""
    assert samples[_key("fleetaudit_coverage_ratio")] == pytest.approx(0.98)
    assert samples[_key("fleetaudit_rows", table="findings")] == 7


def test_label_values_are_escaped() -> None:
    """Quotes, backslashes and newlines in a label value survive a round trip."""
    nasty = 'a"b\\c\nd'
    samples, _ = parse(render_metrics(_manifest(run_id=nasty)))
    infos = [labels for name, labels in samples if name == "fleetaudit_run_info"]
    assert dict(infos[0])["run_id"] == nasty


def test_incomplete_manifest_has_no_last_success() -> None:
    """Only a complete run sets the last-success timestamp."""
    samples, _ = parse(render_metrics(_manifest(status="aborted")))
    assert _key("fleetaudit_last_success_timestamp_seconds") not in samples


def test_exit_code_is_exported_when_given() -> None:
    """The run's exit code (1 when the gate failed) is a metric when the caller passes it."""
    samples, _ = parse(render_metrics(_manifest(), exit_code=1))
    assert samples[_key("fleetaudit_run_exit_code")] == 1


def test_write_metrics_replaces_the_file_whole(tmp_path: Path) -> None:
    """The textfile holds exactly the rendering, and no temporary file is left beside it."""
    path = tmp_path / "textfile" / "fleetaudit.prom"
    path.parent.mkdir()
    path.write_text("stale\n", encoding="utf-8")
    manifest: Mapping[str, Any] = _manifest()
    write_metrics(path, manifest)
    assert path.read_text(encoding="utf-8") == render_metrics(manifest)
    assert [p.name for p in path.parent.iterdir()] == ["fleetaudit.prom"]
