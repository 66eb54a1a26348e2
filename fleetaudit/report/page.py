"""The values report.html shows, gathered from a run directory and the earlier runs of its
series (read through runs.py), then rendered by html.py.

Everything is aggregated or cut to a fixed number of rows here, so the page's size does not
grow with the fleet: a 100k-device run makes a page about as large as a 3k one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fleetaudit.report.changes_text import version_moves
from fleetaudit.report.html import ReportValues, VersionGroup, render_report
from fleetaudit.report.runs import PublishedRun
from fleetaudit.report.trends import run_trend
from fleetaudit.terms import Change, FindingType, Severity, Table

# Rows shown per section; the page says how many more there are.
MAX_ROWS = 100
MAX_MOVES = 50
MAX_GROUPS = 30
MAX_VERSIONS = 8
HISTORY_RUNS = 20
AGE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("< 1d", 86_400),
    ("1-3d", 3 * 86_400),
    ("3-7d", 7 * 86_400),
    ("7-30d", 30 * 86_400),
    ("30-90d", 90 * 86_400),
    ("> 90d", 2**62),
)
# What the page reads of the changes table, per list (its other columns are never read:
# Parquet decodes a whole row group of each column read, so fewer columns, less memory).
_FINDING_COLUMNS = (
    "change", "finding_key", "finding_type", "severity", "product_key", "device_name",
    "module_name", "first_seen_at", "detail",
)  # fmt: skip
_MOVE_COLUMNS = ("change", "product_key", "module_name", "from_version", "to_version")
_SEVERITIES = pa.array([Severity.CRITICAL, Severity.WARNING, Severity.INFO], pa.string())


def render_run_report(run: PublishedRun, earlier: Sequence[PublishedRun]) -> str:
    """report.html of `run`, with `earlier` runs of its series (oldest first) as history."""
    return render_report(report_values(run, earlier))


def report_values(run: PublishedRun, earlier: Sequence[PublishedRun]) -> ReportValues:
    """What the page shows of `run` and its history (at most the last HISTORY_RUNS runs)."""
    manifest = run.manifest
    counts = manifest.get("counts", {})
    recorded = manifest.get("gate")
    gate: Mapping[str, Any] = recorded if isinstance(recorded, Mapping) else {}
    history = [*earlier, run][-HISTORY_RUNS:]
    trends = [run_trend(r.manifest) for r in history]
    labels = list(dict.fromkeys(t.label for trend in trends for t in trend.targets))
    target_history = [
        (label, [next((t.share for t in tr.targets if t.label == label), None) for tr in trends])
        for label in labels
    ]
    new, more_new = _finding_rows(run, Change.NEW)
    resolved, more_resolved = _finding_rows(run, Change.RESOLVED)
    moves, more_moves = _moves(run)
    versions, more_groups = _version_groups(run)
    worst, more_worst = _worst(run)
    return ReportValues(
        run_id=run.run_id,
        started_at=str(manifest.get("started_at", "")),
        finished_at=str(manifest.get("finished_at", "")),
        status=str(manifest.get("status", "")),
        trusted=run.trusted,
        devices=dict(counts.get("devices", {})),
        findings_by_severity=dict(counts.get("findings_by_severity", {})),
        gate_verdict=str(gate.get("verdict", "none")),
        gate_reasons=[str(v.get("reason", "")) for v in gate.get("violations", [])],
        changes=manifest.get("changes") if isinstance(manifest.get("changes"), Mapping) else None,
        versions=versions,
        task_ages=_stalled_ages(run),
        age_buckets=[name for name, _ in AGE_BUCKETS],
        findings_history=[(run_label(t.run_id), dict(t.findings_by_type)) for t in trends],
        target_history=target_history,
        history_runs=[run_label(t.run_id) for t in trends],
        new=new,
        resolved=resolved,
        moves=moves,
        worst=worst,
        more={
            "new": more_new,
            "resolved": more_resolved,
            "moves": more_moves,
            "versions": more_groups,
            "worst": more_worst,
        },
    )


def run_label(run_id: str) -> str:
    """A run on a chart's axis: `12-05 02:00` (its start) for `20261205T020000Z-...`."""
    if len(run_id) >= 13 and run_id[8] == "T" and run_id[:8].isdigit():
        return f"{run_id[4:6]}-{run_id[6:8]} {run_id[9:11]}:{run_id[11:13]}"
    return run_id


def _finding_rows(run: PublishedRun, change: Change) -> tuple[list[dict[str, Any]], int]:
    """The first MAX_ROWS findings of one change, critical first. The changes table is read
    batch by batch and only the best MAX_ROWS kept, so memory does not grow with the run."""
    best: pa.Table | None = None
    total = 0
    order = [("rank", "ascending"), ("finding_type", "ascending"), ("finding_key", "ascending")]
    for batch in run.batches(Table.CHANGES, _FINDING_COLUMNS):
        chosen = pa.Table.from_batches([batch]).filter(pc.equal(batch.column("change"), change))
        total += chosen.num_rows
        rank = pc.index_in(chosen["severity"], value_set=_SEVERITIES)
        chosen = chosen.append_column("rank", pc.fill_null(rank, len(_SEVERITIES)))
        merged = chosen if best is None else pa.concat_tables([best, chosen])
        best = merged.sort_by(order).slice(0, MAX_ROWS)
    shown = []
    for row in best.to_pylist() if best is not None else []:
        seen = row["first_seen_at"]
        shown.append(
            {
                **row,
                "device": f"{row['product_key']}/{row['device_name']}",
                "first_seen": f"{seen:%Y-%m-%d %H:%M}" if isinstance(seen, datetime) else "",
            }
        )
    return shown, max(0, total - MAX_ROWS)


def _moves(run: PublishedRun) -> tuple[list[tuple[str, str, str, str, int]], int]:
    counts: dict[tuple[str, str, str, str], int] = {}
    for batch in run.batches(Table.CHANGES, _MOVE_COLUMNS):
        for product_key, module, was, now, n in version_moves(pa.Table.from_batches([batch])):
            key = (product_key, module, was, now)
            counts[key] = counts.get(key, 0) + n
    moves = sorted(((*k, n) for k, n in counts.items()), key=lambda m: (-m[4], m[0], m[1]))
    return moves[:MAX_MOVES], max(0, len(moves) - MAX_MOVES)


def _version_groups(run: PublishedRun) -> tuple[list[VersionGroup], int]:
    keys = ["product_key", "module_name", "module_version"]
    tally: dict[tuple[str, str, str], int] = {}
    for batch in run.batches(Table.MODULE_VERSIONS, keys):  # memory: distinct versions only
        for row in (
            pa.Table.from_batches([batch]).group_by(keys).aggregate([([], "count_all")]).to_pylist()
        ):
            key = (row["product_key"], row["module_name"], row["module_version"])
            tally[key] = tally.get(key, 0) + row["count_all"]
    targets = {
        (t.get("product_key"), t.get("module")): t.get("version")
        for t in run.manifest.get("targets", [])
        if isinstance(t, Mapping)
    }
    per_group: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for (product_key, module, version), n in tally.items():
        per_group.setdefault((product_key, module), []).append((version, n))
    groups = []
    for (product_key, module), counts in per_group.items():
        counts.sort(key=lambda vc: (-vc[1], vc[0]))
        target = targets.get((product_key, module))
        shown = counts[:MAX_VERSIONS]
        kept = {v for v, _ in shown}
        if target is not None and target not in kept:
            # The target stays visible (and outlined) even when few devices run it.
            shown = [*shown[: MAX_VERSIONS - 1], *[vc for vc in counts if vc[0] == target]]
            kept = {v for v, _ in shown}
        rest = sum(n for v, n in counts if v not in kept)
        if rest:
            shown = [*shown, ("other versions", rest)]
        if target is None and len(counts) == 1:
            continue  # every device agrees and no target: nothing to look at
        groups.append(VersionGroup(product_key, module, shown, target))
    # Targeted groups first, then the largest: that is where a rollout's work is.
    groups.sort(
        key=lambda g: (g.target is None, -sum(n for _, n in g.versions), g.product_key, g.module)
    )
    return groups[:MAX_GROUPS], max(0, len(groups) - MAX_GROUPS)


def _stalled_ages(run: PublishedRun) -> dict[str, list[int]]:
    """Stalled tasks per task status, counted per age bucket."""
    findings = run.table(Table.FINDINGS, ("finding_type", "task_status", "age_seconds"))
    stalled = findings.filter(pc.equal(findings["finding_type"], FindingType.STALLED_TASK))
    ages: dict[str, list[int]] = {}
    for status, age in zip(
        stalled["task_status"].to_pylist(), stalled["age_seconds"].to_pylist(), strict=True
    ):
        counts = ages.setdefault(status or "?", [0] * len(AGE_BUCKETS))
        for i, (_, limit) in enumerate(AGE_BUCKETS):
            if (age or 0) < limit:
                counts[i] += 1
                break
    return dict(sorted(ages.items()))


def _worst(run: PublishedRun) -> tuple[list[dict[str, Any]], int]:
    """Devices by critical findings, then by findings: counted by Arrow over three columns,
    then a second pass reads the finding types of the MAX_ROWS devices shown only."""
    findings = run.table(Table.FINDINGS, ("severity", "product_key", "device_name"))
    per_device = findings.filter(pc.is_valid(findings["device_name"]))
    for severity in _SEVERITIES.to_pylist():
        is_it = pc.cast(pc.equal(per_device["severity"], severity), pa.int64())
        per_device = per_device.append_column(severity, is_it)
    grouped = per_device.group_by(["product_key", "device_name"]).aggregate(
        [([], "count_all"), *((s, "sum") for s in _SEVERITIES.to_pylist())]
    )
    del findings, per_device
    ranked = grouped.sort_by(
        [
            ("critical_sum", "descending"),
            ("count_all", "descending"),
            ("product_key", "ascending"),
            ("device_name", "ascending"),
        ]
    )
    top = ranked.slice(0, MAX_ROWS).to_pylist()
    types: dict[tuple[str, str], set[str]] = {
        (r["product_key"], r["device_name"]): set() for r in top
    }
    names = pa.array(sorted({name for _, name in types}), pa.string())
    for batch in run.batches(Table.FINDINGS, ("product_key", "device_name", "finding_type")):
        shown = batch.filter(pc.fill_null(pc.is_in(batch.column("device_name"), names), False))
        for row in shown.to_pylist():
            kinds = types.get((row["product_key"], row["device_name"]))
            if kinds is not None:
                kinds.add(row["finding_type"])
    rows = [
        {
            "device": f"{r['product_key']}/{r['device_name']}",
            "findings": r["count_all"],
            "critical": r["critical_sum"],
            "warning": r["warning_sum"],
            "info": r["info_sum"],
            "types": ", ".join(sorted(types[(r["product_key"], r["device_name"])])),
        }
        for r in top
    ]
    return rows, max(0, ranked.num_rows - MAX_ROWS)
