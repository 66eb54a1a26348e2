"""What changed between two runs of one series: findings new, resolved or persisting under a
stable key, module versions that moved, devices that joined or left the list (pure: Arrow
tables in, rows out; reading the runs is runs.py's job).

A finding's key is its type plus what identifies it for that type (`_KEY_COLUMNS`): a drift
is about a device's module whatever the version it drifted to, a stalled task is about that
task whatever its age. A persisting finding keeps the first sighting the previous run
recorded, so `first_seen_at` survives any number of runs; the first run of a series has
nothing to compare with and calls every finding new.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from fleetaudit.terms import AuditStatus, Change, FindingType, Severity

_DEVICE = ("product_key", "device_name")
_TASK = (*_DEVICE, "task_id")
# What identifies one finding of each type, besides its type (see the module docstring).
_KEY_COLUMNS: Mapping[str, tuple[str, ...]] = {
    FindingType.VERSION_DRIFT: (*_DEVICE, "module_name"),
    FindingType.MODULE_MISSING: (*_DEVICE, "module_name"),
    FindingType.STALLED_TASK: _TASK,
    FindingType.TASK_SRC_MISMATCH: _TASK,
    FindingType.TASK_ALREADY_APPLIED: _TASK,
    FindingType.ORPHAN_TASK: _TASK,
    FindingType.DUPLICATE_TASKS: _TASK,
    FindingType.FIRMWARE_UNVERIFIED: (*_TASK, "firmware_id"),
    FindingType.DEVICE_NOT_FOUND: _DEVICE,
}
# A type this module does not know yet is keyed by everything that names a thing.
_ANY_KEY = (*_DEVICE, "module_name", "task_id", "firmware_id", "job_id")
# The finding columns a change row copies.
_FINDING_COLUMNS = (
    "finding_type",
    "severity",
    "product_key",
    "device_name",
    "iot_id",
    "module_name",
    "task_id",
    "firmware_id",
    "job_id",
    "detail",
)
# Audit statuses that give a definite answer: a finding missing from a device that errored
# this time is unknown, not resolved.
_ANSWERED = (AuditStatus.OK, AuditStatus.NOT_FOUND)


def finding_key(row: Mapping[str, Any]) -> str:
    """The stable key of one finding: a JSON array of its type and identifying values."""
    finding_type = str(row["finding_type"])
    columns = _KEY_COLUMNS.get(finding_type, _ANY_KEY)
    return orjson.dumps([finding_type, *(row.get(column) for column in columns)]).decode()


@dataclass(frozen=True)
class RunSide:
    """One run as a comparison needs it: its id and start, and the tables that matter.

    `changes` is the run's own changes table when it has one (schema 3 onwards): where its
    findings were first seen. Tables need only the columns `compare_runs` reads.
    """

    run_id: str
    started_at_ms: int
    findings: pa.Table
    devices: pa.Table
    module_versions: pa.Table
    changes: pa.Table | None = None


def compare_runs(current: RunSide, previous: RunSide | None) -> list[dict[str, Any]]:
    """The rows of `current`'s changes table, against `previous` (None: the first run)."""
    rows = list(_finding_changes(current, previous))
    if previous is not None:
        rows += _version_changes(current, previous)
        rows += _device_changes(current, previous)
    return rows


def summarize_changes(
    rows: Iterable[Mapping[str, Any]], previous_run_id: str | None
) -> dict[str, Any]:
    """The manifest's `changes`: how many of each change, new findings by severity."""
    counts = dict.fromkeys(Change, 0)
    new_by_severity = dict.fromkeys(Severity, 0)
    for row in rows:
        counts[Change(row["change"])] += 1
        if row["change"] == Change.NEW:
            severity = Severity(row["severity"])
            new_by_severity[severity] += 1
    return {
        "previous_run_id": previous_run_id,
        **{str(change): n for change, n in counts.items()},
        "new_by_severity": {str(severity): n for severity, n in new_by_severity.items()},
    }


def first_sightings(changes: pa.Table | None) -> dict[str, tuple[int, str]]:
    """finding_key -> (first_seen_at in epoch ms, first_seen_run_id) of a run's findings."""
    if changes is None or changes.num_rows == 0:
        return {}
    present = changes.filter(pc.is_in(changes["change"], pa.array([Change.NEW, Change.PERSISTING])))
    columns = present.select(["finding_key", "first_seen_at", "first_seen_run_id"])
    seen_ms = pc.cast(columns["first_seen_at"], pa.int64()).to_pylist()
    return {
        key: (ms, run_id)
        for key, ms, run_id in zip(
            columns["finding_key"].to_pylist(),
            seen_ms,
            columns["first_seen_run_id"].to_pylist(),
            strict=True,
        )
        if key is not None and ms is not None and run_id is not None
    }


def _keyed(findings: pa.Table) -> dict[str, dict[str, Any]]:
    """Findings by key; a key met twice in one run gets `#2`, `#3`... in reading order."""
    keyed: dict[str, dict[str, Any]] = {}
    for row in findings.to_pylist():
        key = base = finding_key(row)
        n = 1
        while key in keyed:
            n += 1
            key = f"{base}#{n}"
        keyed[key] = row
    return keyed


def _finding_changes(current: RunSide, previous: RunSide | None) -> Iterator[dict[str, Any]]:
    now = _keyed(current.findings)
    before = _keyed(previous.findings) if previous is not None else {}
    previous_id = previous.run_id if previous is not None else None
    seen = first_sightings(previous.changes) if previous is not None else {}
    for key, row in now.items():
        if key in before:
            assert previous is not None
            # A run without a changes table (schema 2) saw it first as far as we know.
            at, run_id = seen.get(key, (previous.started_at_ms, previous.run_id))
            yield _finding_row(Change.PERSISTING, key, row, at, run_id, previous_id)
        else:
            yield _finding_row(
                Change.NEW, key, row, current.started_at_ms, current.run_id, previous_id
            )
    answered = _devices_with(current.devices, _ANSWERED)
    for key, row in before.items():
        if key not in now and (row["product_key"], row["device_name"]) in answered:
            first = seen.get(key)
            yield _finding_row(
                Change.RESOLVED,
                key,
                row,
                first[0] if first else None,
                first[1] if first else None,
                previous_id,
            )


def _finding_row(
    change: Change,
    key: str,
    finding: Mapping[str, Any],
    first_seen_at: int | None,
    first_seen_run_id: str | None,
    previous_run_id: str | None,
) -> dict[str, Any]:
    row = {column: finding.get(column) for column in _FINDING_COLUMNS}
    row.update(
        change=change,
        finding_key=key,
        from_version=finding.get("observed_version") if change == Change.RESOLVED else None,
        to_version=finding.get("observed_version") if change != Change.RESOLVED else None,
        first_seen_at=first_seen_at,
        first_seen_run_id=first_seen_run_id,
        previous_run_id=previous_run_id,
    )
    return row


def _devices_with(devices: pa.Table, statuses: Sequence[str]) -> set[tuple[str, str]]:
    chosen = devices.filter(pc.is_in(devices["audit_status"], pa.array(list(statuses))))
    return set(
        zip(chosen["product_key"].to_pylist(), chosen["device_name"].to_pylist(), strict=True)
    )


def _version_changes(current: RunSide, previous: RunSide) -> list[dict[str, Any]]:
    """Modules whose version moved (or appeared, or went) on devices audited `ok` both times."""
    both = _ok_keys(current.devices).join(
        _ok_keys(previous.devices), keys=list(_DEVICE), join_type="inner"
    )
    keys = [*_DEVICE, "module_name"]
    after = current.module_versions.select([*keys, "iot_id", "module_version"])
    after = after.join(both, keys=list(_DEVICE), join_type="left semi")
    after = after.rename_columns([*keys, "iot_id", "to_version"])
    before = previous.module_versions.select([*keys, "module_version"])
    before = before.join(both, keys=list(_DEVICE), join_type="left semi")
    before = before.rename_columns([*keys, "from_version"])
    joined = after.join(before, keys=keys, join_type="full outer")
    moved = pc.or_kleene(
        pc.xor(pc.is_null(joined["from_version"]), pc.is_null(joined["to_version"])),
        pc.fill_null(pc.not_equal(joined["from_version"], joined["to_version"]), False),
    )
    rows = []
    for row in joined.filter(moved).sort_by([(k, "ascending") for k in keys]).to_pylist():
        was, now = row["from_version"] or "(none)", row["to_version"] or "(none)"
        rows.append(
            {
                **row,
                "change": Change.VERSION_CHANGED,
                "previous_run_id": previous.run_id,
                "detail": f"module {row['module_name']} moved from {was} to {now}",
            }
        )
    return rows


def _ok_keys(devices: pa.Table) -> pa.Table:
    ok = devices.filter(pc.equal(devices["audit_status"], AuditStatus.OK))
    return ok.select(list(_DEVICE))


def _device_changes(current: RunSide, previous: RunSide) -> list[dict[str, Any]]:
    rows = []
    for change, ours, theirs in (
        (Change.DEVICE_JOINED, current.devices, previous.devices),
        (Change.DEVICE_LEFT, previous.devices, current.devices),
    ):
        only = ours.select([*_DEVICE, "iot_id"]).join(
            theirs.select(list(_DEVICE)), keys=list(_DEVICE), join_type="left anti"
        )
        verb = "joined" if change == Change.DEVICE_JOINED else "left"
        for row in only.sort_by([(k, "ascending") for k in _DEVICE]).to_pylist():
            rows.append(
                {
                    **row,
                    "change": change,
                    "previous_run_id": previous.run_id,
                    "detail": f"the device {verb} the device list",
                }
            )
    return rows


def format_changes(counts: Mapping[str, Any]) -> str:
    """The summary's first lines: what changed since the previous run of the series."""
    previous = counts.get("previous_run_id")
    if not previous:
        head = "Changes: first run of its series, every finding is new"
    else:
        head = f"Changes since run {previous}"
    severities = counts.get("new_by_severity", {})
    by_severity = ", ".join(f"{n} {s}" for s, n in severities.items() if n)
    lines = [
        head,
        f"  new         {counts.get('new', 0):>8}" + (f"  ({by_severity})" if by_severity else ""),
        f"  resolved    {counts.get('resolved', 0):>8}",
        f"  persisting  {counts.get('persisting', 0):>8}",
    ]
    if previous:
        lines.append(
            f"  module versions moved {counts.get('version_changed', 0)}, devices joined "
            f"{counts.get('device_joined', 0)}, left {counts.get('device_left', 0)}"
        )
    return "\n".join(lines)


def format_diff(rows: Sequence[Mapping[str, Any]], older: str, newer: str, *, show: int) -> str:
    """`fleetaudit diff`: counts, then up to `show` rows of each kind of change."""
    counts = summarize_changes(rows, older)
    lines = [f"fleetaudit diff {older} -> {newer}", format_changes(counts)]
    for change in (Change.NEW, Change.RESOLVED):
        chosen = [r for r in rows if r["change"] == change]
        if chosen:
            lines += ["", f"{change.capitalize()} findings ({len(chosen)}):"]
            for row in chosen[:show]:
                device = f"{row['product_key']}/{row['device_name']}"
                module = row.get("module_name") or ""
                line = f"  {row['severity']:<8} {row['finding_type']:<22} {device} {module}"
                lines.append(line.rstrip())
            if len(chosen) > show:
                lines.append(f"  ... and {len(chosen) - show} more")
    moves: dict[tuple[str, str, str, str], int] = {}
    for row in rows:
        if row["change"] == Change.VERSION_CHANGED:
            key = (
                row["product_key"],
                row["module_name"],
                row["from_version"] or "(none)",
                row["to_version"] or "(none)",
            )
            moves[key] = moves.get(key, 0) + 1
    if moves:
        lines += ["", "Module versions moved (devices):"]
        ordered = sorted(moves.items(), key=lambda kv: (-kv[1], kv[0]))
        for (product_key, module, was, now), n in ordered[:show]:
            lines.append(f"  {product_key}/{module}: {was} -> {now}  x{n}")
        if len(ordered) > show:
            lines.append(f"  ... and {len(ordered) - show} more")
    for change, title in ((Change.DEVICE_JOINED, "joined"), (Change.DEVICE_LEFT, "left")):
        devices = [f"{r['product_key']}/{r['device_name']}" for r in rows if r["change"] == change]
        if devices:
            more = f" and {len(devices) - show} more" if len(devices) > show else ""
            lines += ["", f"Devices {title} ({len(devices)}): {', '.join(devices[:show])}{more}"]
    return "\n".join(lines)
