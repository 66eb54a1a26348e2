"""Runs over time, end to end: changes.parquet, the new-finding gate, the summary, and the
`diff`, `history` and `report` commands over two real runs against the emulator."""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import pytest

from fleetaudit import cli
from fleetaudit.report.series import REPORT_FILE
from fleetaudit.report.summary import run_summary

from helpers import FIXED_NOW
from nights import DAY_S, HOSTILE, Nights, audit, first_fleet, two_nights


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Nights:
    return two_nights(tmp_path_factory.mktemp("nights"))


def _changes(run_dir: Path) -> list[tuple[object, ...]]:
    query = """
        SELECT change, finding_type, severity, device_name, from_version, to_version,
               first_seen_run_id, previous_run_id
        FROM read_parquet(?) ORDER BY ALL
    """
    with duckdb.connect() as con:
        return con.execute(query, [str(run_dir / "changes.parquet")]).fetchall()


def test_first_run_calls_every_finding_new(nights: Nights) -> None:
    """The first run of a series has nothing to compare with: each finding is new."""
    first_id = nights.first.manifest["run_id"]
    rows = _changes(nights.first.run_dir)
    assert rows == [
        ("new", "version_drift", "warning", HOSTILE, None, "1.0.0", first_id, None),
        ("new", "version_drift", "warning", "d1", None, "1.0.0", first_id, None),
    ]
    assert nights.first.manifest["changes"]["previous_run_id"] is None


def test_second_run_says_what_changed(nights: Nights) -> None:
    """New, resolved, persisting (first sighting kept), a version moved, devices joined/left."""
    first_id, second_id = (n.manifest["run_id"] for n in (nights.first, nights.second))
    rows = _changes(nights.second.run_dir)
    assert rows == [
        ("device_joined", None, None, "d4", None, None, None, first_id),
        ("device_left", None, None, "d3", None, None, None, first_id),
        ("new", "stalled_task", "warning", "d2", None, None, second_id, first_id),
        ("new", "task_src_mismatch", "critical", "d2", None, "1.1.0", second_id, first_id),
        ("persisting", "version_drift", "warning", HOSTILE, None, "1.0.0", first_id, first_id),
        ("resolved", "version_drift", "warning", "d1", "1.0.0", None, first_id, first_id),
        ("version_changed", None, None, "d1", "1.0.0", "1.1.0", None, first_id),
    ]
    counts = nights.second.manifest["changes"]
    assert (counts["new"], counts["resolved"], counts["persisting"]) == (2, 1, 1)
    assert counts["new_by_severity"]["critical"] == 1


def test_gate_on_new_critical_findings(nights: Nights) -> None:
    """`max_new_critical = 0` trips on the one critical finding that appeared, naming it."""
    gate = nights.second.manifest["gate"]
    assert gate["verdict"] == "failed"
    [violation] = gate["violations"]
    assert violation["rule"] == "max_new_critical"
    assert violation["devices"] == ["pk1/d2"]


def test_targets_share_is_recorded(nights: Nights) -> None:
    """Each target's on-target share is in the manifest for the trends."""
    [target] = nights.second.manifest["targets"]
    assert target == {
        "product_key": "pk1",
        "module": "default",
        "version": "1.1.0",
        "devices": 4,
        "on_target": 3,
    }


def test_summary_leads_with_what_changed(nights: Nights) -> None:
    """The run summary's first section after the header is the changes since the last run."""
    text = run_summary(nights.second.run_dir)
    sections = text.split("\n\n")
    assert sections[1].startswith(f"Changes since run {nights.first.manifest['run_id']}")
    assert "new                2  (1 critical, 1 warning)" in sections[1]


def test_diff_command_compares_any_two_runs(
    nights: Nights, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fleetaudit diff RUN_A RUN_B` lists new and resolved findings and moved versions."""
    code = cli.main(["diff", str(nights.first.run_dir), str(nights.second.run_dir)])
    out = capsys.readouterr().out
    assert code == 0
    assert "critical task_src_mismatch" in out
    assert "pk1/default: 1.0.0 -> 1.1.0  x1" in out
    assert "Devices joined (1): pk1/d4" in out
    assert "Devices left (1): pk1/d3" in out


def test_diff_given_the_newer_run_first_compares_in_time_order(
    nights: Nights, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs given newer first are compared oldest first (new and resolved do not swap)."""
    assert cli.main(["diff", str(nights.first.run_dir), str(nights.second.run_dir)]) == 0
    forward = capsys.readouterr().out
    assert cli.main(["diff", str(nights.second.run_dir), str(nights.first.run_dir)]) == 0
    note, _, backward = capsys.readouterr().out.partition("\n")
    assert note.startswith("note: ")
    assert "is the older run" in note
    assert backward == forward


def test_history_command_shows_each_run(nights: Nights, capsys: pytest.CaptureFixture[str]) -> None:
    """`fleetaudit history OUT` prints a line per run of LATEST's series and target shares."""
    assert cli.main(["history", str(nights.out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    runs = [line for line in lines if line.startswith("2024")]
    assert [line.split()[0] for line in runs] == [
        nights.first.manifest["run_id"],
        nights.second.manifest["run_id"],
    ]
    assert "failed" in runs[1]
    assert "  pk1/default@1.1.0: 50.0% 75.0%" in lines


def test_every_run_writes_its_report(nights: Nights) -> None:
    """report.html is in each published run, and `fleetaudit report` writes it again."""
    report = nights.second.run_dir / REPORT_FILE
    before = report.read_bytes()
    report.unlink()
    assert cli.main(["report", str(nights.out)]) == 0
    assert report.read_bytes() == before


def test_other_series_is_not_compared(tmp_path: Path) -> None:
    """A run with another series in the same OUT starts its own comparison."""
    audit(tmp_path, first_fleet(), FIXED_NOW)
    other = audit(tmp_path, first_fleet(), FIXED_NOW + DAY_S, series="canary")
    assert other.manifest["series"] == "canary"
    assert other.manifest["changes"]["previous_run_id"] is None


def test_manifest_names_the_series(nights: Nights) -> None:
    """The default series is the device list's absolute path."""
    manifest = orjson.loads((nights.second.run_dir / "manifest.json").read_bytes())
    assert manifest["series"] == str((nights.out.parent / "devices.csv").resolve())
