"""What changed between two runs of one series: findings new, resolved or persisting under a
stable key (keys.py), module versions that moved, devices that joined or left the list
(pure: Arrow tables in, the changes table out; reading the runs is runs.py's job).

All of it is column-wise Arrow work (filters, `is_in`, joins), never a Python object per
row, so comparing two runs of a large fleet costs about what their tables weigh. A
persisting finding keeps the first sighting the previous run recorded, so `first_seen_at`
survives any number of runs; the first run of a series calls every finding new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fleetaudit.report.keys import finding_keys
from fleetaudit.report.schema import CHANGES
from fleetaudit.terms import AuditStatus, Change, FindingType, Severity

_DEVICE = ["product_key", "device_name"]
_MODULE = [*_DEVICE, "module_name"]
_ORDER = "__order"  # row order kept through joins, which do not keep it
_TS = pa.timestamp("ms", tz="UTC")
# Audit statuses that give a definite answer: a finding missing from a device that errored
# this time is unknown, not resolved.
_ANSWERED = pa.array([AuditStatus.OK, AuditStatus.NOT_FOUND], pa.string())
# Findings still held as known: their first sighting is carried to the next run.
_PRESENT = pa.array([Change.NEW, Change.PERSISTING, Change.UNVERIFIED], pa.string())
# Finding types only a device's module versions can confirm or clear.
_NEEDS_VERSIONS = pa.array(
    [
        FindingType.VERSION_DRIFT,
        FindingType.MODULE_MISSING,
        FindingType.TASK_SRC_MISMATCH,
        FindingType.TASK_ALREADY_APPLIED,
    ],
    pa.string(),
)


@dataclass(frozen=True)
class RunSide:
    """One run as a comparison needs it: its id and start, and the tables that matter.

    `changes` is the run's own changes table when it has one (schema 4 onwards): where its
    findings were first seen. Tables need only the columns `compare_runs` reads
    (runs.SIDE_COLUMNS).
    """

    run_id: str
    started_at_ms: int
    findings: pa.Table
    devices: pa.Table
    module_versions: pa.Table
    changes: pa.Table | None = None


def compare_runs(current: RunSide, previous: RunSide | None) -> pa.Table:
    """`current`'s changes table, against `previous` (None: the first run of its series)."""
    parts = _finding_changes(current, previous)
    if previous is not None:
        parts += [_version_changes(current, previous), *_device_changes(current, previous)]
    return pa.concat_tables(parts) if parts else CHANGES.empty_table()


def summarize_changes(changes: pa.Table, previous_run_id: str | None) -> dict[str, Any]:
    """The manifest's `changes`: how many rows of each change, new findings by severity."""
    counts = _counts(changes["change"])
    new = changes.filter(pc.equal(changes["change"], Change.NEW))
    severities = _counts(new["severity"])
    return {
        "previous_run_id": previous_run_id,
        **{str(change): counts.get(change, 0) for change in Change},
        "new_by_severity": {str(s): severities.get(s, 0) for s in Severity},
    }


def first_sightings(changes: pa.Table | None) -> pa.Table:
    """`finding_key`, `first_seen_at`, `first_seen_run_id` of a run's present findings."""
    columns = ["finding_key", "first_seen_at", "first_seen_run_id"]
    if changes is None:
        return pa.schema([CHANGES.field(c) for c in columns]).empty_table()
    present = changes.filter(pc.is_in(changes["change"], _PRESENT)).select(columns)
    return present.filter(pc.is_valid(present["finding_key"]))


def _counts(column: pa.ChunkedArray) -> dict[str, int]:
    return {
        str(entry["values"]): int(entry["counts"])
        for entry in pc.value_counts(column).to_pylist()
        if entry["values"] is not None
    }


def _finding_changes(current: RunSide, previous: RunSide | None) -> list[pa.Table]:
    now = _keyed(current.findings)
    if previous is None:
        return [_new(now, current, None)]
    # What the previous run knew: its findings, and those it carried as unverified.
    before = _with_carried(_keyed(previous.findings), previous.changes)
    seen = now.filter(pc.is_in(now["finding_key"], before["finding_key"]))
    fresh = now.filter(pc.invert(pc.is_in(now["finding_key"], before["finding_key"])))
    gone = before.filter(pc.invert(pc.is_in(before["finding_key"], now["finding_key"])))
    # Gone from a device this run checked for it: resolved. Gone from a listed device this
    # run could not check (its calls failed; its versions were not read, for the types only
    # versions clear): unverified, its first sighting kept. A device that left the list
    # resolves nothing and carries nothing.
    checked = _in_order(
        pa.concat_tables(
            [
                _checked(gone, current.devices, versions=False),
                _checked(gone, current.devices, versions=True),
            ]
        )
    )
    listed = gone.join(current.devices.select(_DEVICE), keys=_DEVICE, join_type="left semi")
    unchecked = _in_order(listed.filter(pc.invert(pc.is_in(listed[_ORDER], checked[_ORDER]))))
    sightings = first_sightings(previous.changes)
    # A previous run without a changes table (before schema 4) saw it first, as far as we know.
    persisting = _with_sightings(seen, sightings, previous.started_at_ms, previous.run_id)
    resolved = _with_sightings(checked, sightings, None, None)
    unverified = _with_sightings(unchecked, sightings, previous.started_at_ms, previous.run_id)
    return [
        _new(fresh, current, previous.run_id),
        _shaped(persisting, Change.PERSISTING, previous_run_id=previous.run_id),
        _shaped(resolved, Change.RESOLVED, previous_run_id=previous.run_id, resolved=True),
        _shaped(unverified, Change.UNVERIFIED, previous_run_id=previous.run_id),
    ]


def _with_carried(before: pa.Table, changes: pa.Table | None) -> pa.Table:
    """`before` (keyed findings) and the previous run's unverified findings as rows alike."""
    if changes is None or "to_version" not in changes.column_names:
        return before
    carried = changes.filter(pc.equal(changes["change"], Change.UNVERIFIED))
    if carried.num_rows == 0:
        return before
    columns = []
    for field in before.schema:
        if field.name == _ORDER:
            start = before.num_rows
            columns.append(pa.array(range(start, start + carried.num_rows), pa.int64()))
        elif field.name == "observed_version":
            columns.append(pc.cast(carried["to_version"], field.type))
        elif field.name in carried.column_names:
            columns.append(pc.cast(carried[field.name], field.type))
        else:
            columns.append(pa.nulls(carried.num_rows, field.type))
    return pa.concat_tables([before, pa.Table.from_arrays(columns, schema=before.schema)])


def _answered(devices: pa.Table, *, versions: bool = False) -> pa.Table:
    """The devices that gave a definite answer (with `versions`: `not_found`, or `ok` with
    their module versions read)."""
    answered = devices.filter(pc.is_in(devices["audit_status"], _ANSWERED))
    if versions:
        answered = answered.filter(
            pc.or_(
                pc.equal(answered["audit_status"], AuditStatus.NOT_FOUND),
                pc.is_valid(answered["module_count"]),
            )
        )
    return answered.select(_DEVICE)


def _checked(gone: pa.Table, devices: pa.Table, *, versions: bool) -> pa.Table:
    """The gone findings of the kinds that need (or not) versions, on devices checked for
    them this run."""
    kinds = pc.is_in(gone["finding_type"], _NEEDS_VERSIONS)
    of_kind = gone.filter(kinds if versions else pc.invert(kinds))
    return of_kind.join(_answered(devices, versions=versions), keys=_DEVICE, join_type="left semi")


def _new(findings: pa.Table, current: RunSide, previous_run_id: str | None) -> pa.Table:
    """New findings: first seen now, by this run."""
    return _shaped(
        findings,
        Change.NEW,
        previous_run_id=previous_run_id,
        first_seen_at=current.started_at_ms,
        first_seen_run_id=current.run_id,
    )


def _keyed(findings: pa.Table) -> pa.Table:
    keyed = findings.append_column("finding_key", finding_keys(findings))
    return keyed.append_column(_ORDER, pa.array(range(findings.num_rows), pa.int64()))


def _in_order(table: pa.Table) -> pa.Table:
    return table.sort_by(_ORDER)


def _with_sightings(
    findings: pa.Table, sightings: pa.Table, default_ms: int | None, default_run: str | None
) -> pa.Table:
    joined = _in_order(findings.join(sightings, keys="finding_key", join_type="left outer"))
    seen_at = pc.cast(joined["first_seen_at"], pa.int64())
    if default_ms is not None:
        seen_at = pc.fill_null(seen_at, default_ms)
    run_ids = joined["first_seen_run_id"]
    if default_run is not None:
        run_ids = pc.fill_null(run_ids, default_run)
    joined = joined.drop_columns(["first_seen_at", "first_seen_run_id"])
    joined = joined.append_column("first_seen_at", pc.cast(seen_at, _TS))
    return joined.append_column("first_seen_run_id", run_ids)


def _shaped(
    table: pa.Table,
    change: Change,
    *,
    previous_run_id: str | None,
    resolved: bool = False,
    first_seen_at: int | None = None,
    first_seen_run_id: str | None = None,
) -> pa.Table:
    """`table`'s rows as changes rows: its columns by name, constants for the rest."""
    rows = table.num_rows
    given: dict[str, Any] = {
        "change": change,
        "previous_run_id": previous_run_id,
        "first_seen_at": first_seen_at,
        "first_seen_run_id": first_seen_run_id,
    }
    if "observed_version" in table.column_names:
        version = "from_version" if resolved else "to_version"
        table = table.append_column(version, table["observed_version"])
    columns = []
    for field in CHANGES:
        if field.name in table.column_names:
            columns.append(pc.cast(table[field.name], field.type))
        else:
            columns.append(pa.array([given.get(field.name)] * rows, field.type))
    return pa.Table.from_arrays(columns, schema=CHANGES)


def _version_changes(current: RunSide, previous: RunSide) -> pa.Table:
    """Modules whose version moved (or appeared, or went) on devices whose versions were read
    (`ok`, module_count set) both times."""
    both = _ok(current.devices).join(_ok(previous.devices), keys=_DEVICE, join_type="inner")
    after = current.module_versions.select([*_MODULE, "iot_id", "module_version"])
    after = after.join(both, keys=_DEVICE, join_type="left semi")
    after = after.rename_columns([*_MODULE, "iot_id", "to_version"])
    before = previous.module_versions.select([*_MODULE, "module_version"])
    before = before.join(both, keys=_DEVICE, join_type="left semi")
    before = before.rename_columns([*_MODULE, "from_version"])
    joined = after.join(before, keys=_MODULE, join_type="full outer")
    was, now = joined["from_version"], joined["to_version"]
    moved = pc.or_kleene(
        pc.xor(pc.is_null(was), pc.is_null(now)), pc.fill_null(pc.not_equal(was, now), False)
    )
    joined = joined.filter(moved).sort_by([(k, "ascending") for k in _MODULE])
    detail = pc.binary_join_element_wise(
        "module ",
        joined["module_name"],
        " moved from ",
        pc.fill_null(joined["from_version"], "(none)"),
        " to ",
        pc.fill_null(joined["to_version"], "(none)"),
        "",
    )
    joined = joined.append_column("detail", detail)
    return _shaped(joined, Change.VERSION_CHANGED, previous_run_id=previous.run_id)


def _ok(devices: pa.Table) -> pa.Table:
    """Devices audited `ok` with their module versions read (not sampled out, not tasks-only)."""
    ok = devices.filter(pc.equal(devices["audit_status"], AuditStatus.OK))
    return ok.filter(pc.is_valid(ok["module_count"])).select(_DEVICE)


def _device_changes(current: RunSide, previous: RunSide) -> list[pa.Table]:
    tables = []
    for change, ours, theirs in (
        (Change.DEVICE_JOINED, current.devices, previous.devices),
        (Change.DEVICE_LEFT, previous.devices, current.devices),
    ):
        only = ours.select([*_DEVICE, "iot_id"]).join(
            theirs.select(_DEVICE), keys=_DEVICE, join_type="left anti"
        )
        only = only.sort_by([(k, "ascending") for k in _DEVICE])
        verb = "joined" if change == Change.DEVICE_JOINED else "left"
        detail = pa.array([f"the device {verb} the device list"] * only.num_rows, pa.string())
        tables.append(
            _shaped(only.append_column("detail", detail), change, previous_run_id=previous.run_id)
        )
    return tables
