"""What changed between two runs (report/changes.py): keys, new/resolved/persisting, first
sightings carried forward, versions moved, devices joined or left (pure, no I/O)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetaudit.report.changes import RunSide, first_sightings, summarize_changes
from fleetaudit.report.changes import compare_runs as compare_tables
from fleetaudit.report.changes_text import format_diff
from fleetaudit.report.keys import finding_key, finding_keys
from fleetaudit.report.schema import rows_to_batch

DAY_MS = 86_400_000


def _table(name: str, rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_batches([rows_to_batch(name, rows)])


def _drift(device: str, observed: str, module: str = "default") -> dict[str, Any]:
    return {
        "finding_type": "version_drift",
        "severity": "warning",
        "product_key": "pk",
        "device_name": device,
        "module_name": module,
        "observed_version": observed,
        "expected_version": "2.0",
    }


def _stalled(device: str, task_id: str, age: int) -> dict[str, Any]:
    return {
        "finding_type": "stalled_task",
        "severity": "warning",
        "product_key": "pk",
        "device_name": device,
        "task_id": task_id,
        "age_seconds": age,
    }


def _side(
    run_id: str,
    findings: Sequence[dict[str, Any]] = (),
    devices: dict[str, str] | None = None,
    versions: Sequence[tuple[str, str, str]] = (),
    changes: Sequence[dict[str, Any]] | None = None,
    day: int = 0,
) -> RunSide:
    statuses = devices if devices is not None else {"d1": "ok", "d2": "ok"}
    return RunSide(
        run_id=run_id,
        started_at_ms=day * DAY_MS,
        findings=_table("findings", findings),
        devices=_table(
            "devices",
            [
                # A full audit: an `ok` device's module versions were read.
                {"product_key": "pk", "device_name": d, "audit_status": s, "module_count": 1}
                for d, s in statuses.items()
            ],
        ),
        module_versions=_table(
            "module_versions",
            [
                {"product_key": "pk", "device_name": d, "module_name": m, "module_version": v}
                for d, m, v in versions
            ],
        ),
        changes=None if changes is None else _table("changes", changes),
    )


def compare_runs(current: RunSide, previous: RunSide | None) -> list[dict[str, Any]]:
    """The changes table as rows, timestamps as epoch milliseconds."""
    rows: list[dict[str, Any]] = compare_tables(current, previous).to_pylist()
    for row in rows:
        seen = row["first_seen_at"]
        row["first_seen_at"] = None if seen is None else round(seen.timestamp() * 1000)
    return rows


def _by_change(rows: Sequence[dict[str, Any]]) -> dict[str, list[str | None]]:
    grouped: dict[str, list[str | None]] = {}
    for row in rows:
        grouped.setdefault(str(row["change"]), []).append(row["device_name"])
    return grouped


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        (_drift("d1", "1.0"), _drift("d1", "1.1"), True),  # drift is about the module
        (_drift("d1", "1.0"), _drift("d1", "1.0", module="ble"), False),
        (_drift("d1", "1.0"), _drift("d2", "1.0"), False),
        (_stalled("d1", "T1", 10), _stalled("d1", "T1", 99_999), True),  # age is no identity
        (_stalled("d1", "T1", 10), _stalled("d1", "T2", 10), False),
    ],
)
def test_finding_key_says_what_the_finding_is_about(
    left: dict[str, Any], right: dict[str, Any], same: bool
) -> None:
    """A key holds the type and what identifies it for that type, nothing that moves."""
    assert (finding_key(left) == finding_key(right)) is same


def test_first_run_calls_every_finding_new() -> None:
    """Without a previous run every finding is new, first seen now, by this run."""
    rows = compare_runs(_side("R1", [_drift("d1", "1.0")], day=3), None)
    [row] = rows
    assert (row["change"], row["first_seen_at"], row["first_seen_run_id"]) == (
        "new",
        3 * DAY_MS,
        "R1",
    )
    assert row["previous_run_id"] is None


def test_persisting_finding_keeps_its_first_sighting() -> None:
    """A finding seen two runs ago keeps that run's id and time, not the previous run's."""
    first = compare_runs(_side("R1", [_drift("d1", "1.0")], day=1), None)
    second = _side("R2", [_drift("d1", "1.0")], changes=first, day=2)
    third = compare_runs(_side("R3", [_drift("d1", "1.5")], day=3), second)
    [row] = third
    assert (row["change"], row["first_seen_run_id"], row["first_seen_at"]) == (
        "persisting",
        "R1",
        DAY_MS,
    )
    assert row["to_version"] == "1.5"


def test_previous_run_without_changes_is_the_first_sighting() -> None:
    """A previous run written before changes.parquet existed counts as the first sighting."""
    previous = _side("R1", [_drift("d1", "1.0")], day=1)
    [row] = compare_runs(_side("R2", [_drift("d1", "1.0")], day=2), previous)
    assert (row["first_seen_run_id"], row["first_seen_at"]) == ("R1", DAY_MS)


def test_new_and_resolved() -> None:
    """A finding only now is new; one only before, on a device answered now, is resolved."""
    previous = _side("R1", [_drift("d1", "1.0")])
    rows = compare_runs(_side("R2", [_stalled("d2", "T1", 5)]), previous)
    assert _by_change(rows) == {"new": ["d2"], "resolved": ["d1"]}
    resolved = next(r for r in rows if r["change"] == "resolved")
    assert (resolved["from_version"], resolved["to_version"]) == ("1.0", None)


def test_a_device_in_error_resolves_nothing() -> None:
    """A device whose calls failed this time has unknown findings: carried as unverified
    with their first sighting, not resolved."""
    previous = _side("R1", [_drift("d1", "1.0")], day=1)
    current = _side("R2", devices={"d1": "error", "d2": "ok"}, day=2)
    [row] = compare_runs(current, previous)
    assert (row["change"], row["device_name"]) == ("unverified", "d1")
    assert (row["first_seen_run_id"], row["first_seen_at"]) == ("R1", DAY_MS)


def test_a_finding_back_after_a_night_in_error_keeps_its_first_sighting() -> None:
    """Seen in R1, unknown in R2 (the device errored), seen again in R3: persisting since R1,
    not new (a nightly's max_new gate must not fire on the old backlog)."""
    r1 = _side("R1", [_drift("d1", "1.0")], day=1)
    r2_rows = compare_runs(_side("R2", devices={"d1": "error", "d2": "ok"}, day=2), r1)
    r2 = _side("R2", devices={"d1": "error", "d2": "ok"}, changes=r2_rows, day=2)
    [row] = compare_runs(_side("R3", [_drift("d1", "1.0")], day=3), r2)
    assert (row["change"], row["first_seen_run_id"]) == ("persisting", "R1")


def test_versions_not_read_resolve_no_version_finding() -> None:
    """A device `ok` without its versions read (a sample, a tasks-only audit): its drift is
    unverified and no module moved; its task findings still resolve."""
    previous = _side(
        "R1", [_drift("d1", "1.0"), _stalled("d1", "T1", 5)], versions=[("d1", "default", "1.0")]
    )
    current = _side("R2", devices={"d1": "ok", "d2": "ok"})
    unread = current.devices.set_column(
        current.devices.schema.get_field_index("module_count"),
        "module_count",
        pa.array([None, 1], pa.int32()),
    )
    rows = compare_runs(replace(current, devices=unread), previous)
    assert {(r["change"], r["finding_type"]) for r in rows} == {
        ("unverified", "version_drift"),
        ("resolved", "stalled_task"),
    }


def test_versions_moved_on_devices_audited_both_times() -> None:
    """A module's version moving, appearing or going is a change; an errored device is not."""
    previous = _side(
        "R1",
        devices={"d1": "ok", "d2": "ok", "d3": "ok"},
        versions=[("d1", "default", "1.0"), ("d1", "ble", "3.0"), ("d2", "default", "1.0")],
    )
    current = _side(
        "R2",
        devices={"d1": "ok", "d2": "error", "d3": "ok"},
        versions=[("d1", "default", "1.1"), ("d3", "wifi", "0.1")],
    )
    moved = [
        (r["device_name"], r["module_name"], r["from_version"], r["to_version"])
        for r in compare_runs(current, previous)
    ]
    assert moved == [
        ("d1", "ble", "3.0", None),
        ("d1", "default", "1.0", "1.1"),
        ("d3", "wifi", None, "0.1"),
    ]


def test_devices_joined_and_left() -> None:
    """A device only in this run's list joined it; one only in the previous run's left."""
    previous = _side("R1", devices={"d1": "ok", "gone": "not_found"})
    current = _side("R2", devices={"d1": "ok", "fresh": "error"})
    assert _by_change(compare_runs(current, previous)) == {
        "device_joined": ["fresh"],
        "device_left": ["gone"],
    }


def test_same_key_twice_in_one_run_stays_two_findings() -> None:
    """Two findings with one key in a run are both kept, the second keyed `#2`."""
    rows = compare_runs(_side("R1", [_drift("d1", "1.0"), _drift("d1", "1.0")]), None)
    keys = [r["finding_key"] for r in rows]
    assert keys == [keys[0], keys[0] + "#2"]


def test_first_sightings_reads_only_present_findings() -> None:
    """Resolved rows are no sighting of a finding the run still has."""
    rows = compare_runs(
        _side("R2", [_drift("d2", "1.0")], day=2), _side("R1", [_drift("d1", "1.0")])
    )
    seen = first_sightings(compare_tables(_side("R2", [_drift("d2", "1.0")], day=2), None))
    assert seen.column("first_seen_run_id").to_pylist() == ["R2"]
    assert len(rows) == 2


def test_summary_and_diff_text_count_each_change() -> None:
    """The manifest's counts and the diff's text agree on what changed."""
    previous = _side("R1", [_drift("d1", "1.0")], versions=[("d1", "default", "1.0")])
    current = _side(
        "R2",
        [{**_stalled("d2", "T1", 5), "severity": "critical"}],
        versions=[("d1", "default", "2.0")],
    )
    table = compare_tables(current, previous)
    counts = summarize_changes(table, "R1")
    assert (counts["new"], counts["resolved"], counts["version_changed"]) == (1, 1, 1)
    assert counts["new_by_severity"] == {"critical": 1, "warning": 0, "info": 0}
    text = format_diff(table, "R1", "R2", show=5)
    assert "new                1  (1 critical)" in text
    assert "pk/default: 1.0 -> 2.0  x1" in text


_FINDING = st.builds(
    lambda device, kind, version: (
        _drift(device, version) if kind == "drift" else _stalled(device, f"T{version}", 1)
    ),
    st.sampled_from(["d1", "d2"]),
    st.sampled_from(["drift", "stalled"]),
    st.sampled_from(["1", "2"]),
)


@given(before=st.lists(_FINDING, max_size=6), now=st.lists(_FINDING, max_size=6))
def test_every_finding_is_accounted_for_once(
    before: list[dict[str, Any]], now: list[dict[str, Any]]
) -> None:
    """New + persisting rows are this run's findings; resolved ones are the rest of before."""
    rows = compare_runs(_side("R2", now), _side("R1", before))
    by_change = {
        c: [r["finding_key"] for r in rows if r["change"] == c]
        for c in ("new", "persisting", "resolved")
    }
    now_keys = {r["finding_key"] for r in compare_runs(_side("R2", now), None)}
    before_keys = {r["finding_key"] for r in compare_runs(_side("R1", before), None)}
    assert len(by_change["new"]) + len(by_change["persisting"]) == len(now)
    assert set(by_change["persisting"]) == now_keys & before_keys
    assert set(by_change["resolved"]) == before_keys - now_keys


@pytest.mark.parametrize(
    "device", ['qu"ote', "back\\slash", "new\nline", "tab\tand\x01", "\u00e9t\u00e9", "<b>&"]
)
def test_keys_are_json_arrays_of_what_they_name(device: str) -> None:
    """Any device name keys to a JSON array that reads back to the type and the names."""
    key = finding_key(_drift(device, "1.0"))
    assert json.loads(key) == ["version_drift", "pk", device, "default"]


def test_keys_of_a_table_and_of_a_row_agree() -> None:
    """Keying a whole column gives each row's own key (nulls included)."""
    rows = [
        _drift("d1", "1.0"),
        _stalled("d2", "T1", 5),
        {**_stalled("d3", "T2", 5), "task_id": None},
    ]
    keys = finding_keys(_table("findings", rows)).to_pylist()
    assert keys == [finding_key(row) for row in rows]
    assert json.loads(keys[2]) == ["stalled_task", "pk", "d3", None]
