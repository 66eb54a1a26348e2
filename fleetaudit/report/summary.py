"""The text summary of a finished run, read back from its Parquet files and manifest.json.

Plain text for a terminal or an e-mail: no colour codes, lines under 100 characters.
Aggregation is done by pyarrow so a run of a million devices summarizes in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fleetaudit.durations import format_duration
from fleetaudit.errors import UsageError
from fleetaudit.report.changes_text import format_changes
from fleetaudit.report.manifest import AUDIT_STATUSES, SEVERITIES
from fleetaudit.report.schema import RUN_TABLES
from fleetaudit.report.staging import LATEST, latest_run
from fleetaudit.terms import FindingType, Severity

# Enough drift lines to act on without burying the rest of the summary.
_MAX_DRIFT_GROUPS = 20
_MAX_VERSIONS_SHOWN = 5


def find_run_dir(path: Path) -> Path:
    """The finished run `path` names: a run directory, an OUT (the run its `LATEST` names)
    or an `OUT/LATEST` file; UsageError (exit 2) saying why when none resolves."""
    if path.is_dir() and (path / "manifest.json").is_file():
        return path
    if path.is_dir() and (path / LATEST).exists():
        out = path
    elif path.name == LATEST and path.is_file():
        out = path.parent
    elif path.is_dir():
        raise UsageError(
            f"{path} is not a finished run directory, nor an OUT with a {LATEST} file "
            f"(no trusted run yet?): give RUN_DIR, OUT or OUT/{LATEST}"
        )
    else:
        raise UsageError(f"{path} does not exist: give RUN_DIR, OUT or OUT/{LATEST}")
    run_dir = latest_run(out)
    if run_dir is None or not (run_dir / "manifest.json").is_file():
        raise UsageError(f"{out / LATEST} does not name a finished run directory")
    return run_dir


def summarize_run(
    run_dir: Path, *, worst: int = 10, manifest: Mapping[str, Any] | None = None
) -> str:
    """A readable summary of the run in `run_dir` (its manifest.json unless one is given)."""
    if manifest is None:
        manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    devices = pq.read_table(run_dir / "devices.parquet", columns=["audit_status"])
    findings = pq.read_table(
        run_dir / "findings.parquet",
        columns=[
            "finding_type",
            "severity",
            "product_key",
            "device_name",
            "module_name",
            "expected_version",
        ],
    )
    versions = pq.read_table(
        run_dir / "module_versions.parquet",
        columns=["product_key", "module_name", "module_version"],
    )
    sections = [
        _header(manifest),
        _changes_section(manifest),
        _device_section(devices),
        _finding_section(findings),
        _tasks_section(manifest),
        _worst_section(findings, worst),
        _drift_section(versions, findings),
        _api_section(manifest.get("api", {})),
        _files_section(run_dir, manifest),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def run_summary(run_dir: Path) -> str:
    """The short summary printed at the end of `fleetaudit run`, and how to query the run."""
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    devices = pq.read_table(run_dir / "devices.parquet", columns=["audit_status"])
    findings = pq.read_table(run_dir / "findings.parquet", columns=["finding_type", "severity"])
    sections = [
        _header(manifest),
        _changes_section(manifest),
        _device_section(devices),
        _finding_section(findings),
        _tasks_section(manifest),
        _api_section(manifest.get("api", {})),
        _files_section(run_dir, manifest),
        _query_hint(run_dir),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _query_hint(run_dir: Path) -> str:
    every_run = run_dir.parent.parent / "run_date=*" / "run_id=*" / "findings.parquet"
    return (
        f"More: fleetaudit summary {run_dir}\n"
        "Query every run with SQL (DuckDB reads the run_date/run_id partitions from the path):\n"
        "  SELECT run_id, finding_type, severity, count(*) AS n\n"
        f"  FROM '{every_run}' GROUP BY ALL ORDER BY n DESC"
    )


def _header(manifest: Mapping[str, Any]) -> str:
    lines = [
        f"fleetaudit run {manifest.get('run_id', '?')} ({manifest.get('status', '?')})",
        f"  started   {manifest.get('started_at', '?')}",
        f"  finished  {manifest.get('finished_at', '?')}",
    ]
    if manifest.get("wall_time_s") is not None:
        lines.append(f"  wall time {format_duration(float(manifest['wall_time_s']))}")
    return "\n".join(lines)


def _changes_section(manifest: Mapping[str, Any]) -> str:
    """What changed since the previous run leads: it is what a nightly reader acts on."""
    counts = manifest.get("changes")
    return format_changes(counts) if isinstance(counts, Mapping) else ""


def _device_section(devices: pa.Table) -> str:
    counts = _value_counts(devices, "audit_status")
    total = devices.num_rows
    lines = [f"Devices: {total}"]
    for status in [*AUDIT_STATUSES, *sorted(set(counts) - set(AUDIT_STATUSES))]:
        n = counts.get(status, 0)
        lines.append(f"  {status:<12}{n:>10}  {_percent(n, total)}")
    return "\n".join(lines)


def _finding_section(findings: pa.Table) -> str:
    if findings.num_rows == 0:
        return "Findings: none"
    grouped = findings.group_by(["finding_type", "severity"]).aggregate([([], "count_all")])
    by_type: dict[str, dict[str, int]] = {}
    for row in grouped.to_pylist():
        by_type.setdefault(row["finding_type"], {})[row["severity"]] = row["count_all"]
    severities = [*SEVERITIES, *sorted({s for c in by_type.values() for s in c} - {*SEVERITIES})]
    lines = [f"Findings: {findings.num_rows}", _row("  type", [*severities, "total"], 24)]
    for finding_type in sorted(by_type, key=lambda t: (-sum(by_type[t].values()), t)):
        counts = by_type[finding_type]
        cells = [str(counts.get(s, 0)) for s in severities] + [str(sum(counts.values()))]
        lines.append(_row(f"  {finding_type}", cells, 24))
    return "\n".join(lines)


def _worst_section(findings: pa.Table, worst: int) -> str:
    if findings.num_rows == 0 or worst <= 0:
        return ""
    per_device = findings.filter(pc.is_valid(findings["device_name"]))
    keyed = per_device.append_column(
        "critical", pc.cast(pc.equal(per_device["severity"], Severity.CRITICAL), pa.int64())
    )
    grouped = keyed.group_by(["product_key", "device_name"]).aggregate(
        [([], "count_all"), ("critical", "sum")]
    )
    ranked = grouped.sort_by(
        [
            ("critical_sum", "descending"),
            ("count_all", "descending"),
            ("product_key", "ascending"),
            ("device_name", "ascending"),
        ]
    ).slice(0, worst)
    if ranked.num_rows == 0:
        return ""
    lines = [f"Worst devices (top {ranked.num_rows}: critical first, then most findings)"]
    for row in ranked.to_pylist():
        device = f"{row['product_key']}/{row['device_name']}"
        lines.append(
            f"  {device:<48}{row['count_all']:>6} findings  {row['critical_sum']:>4} critical"
        )
    return "\n".join(lines)


def _drift_section(versions: pa.Table, findings: pa.Table) -> str:
    if versions.num_rows == 0:
        return "Versions: no module versions reported"
    grouped = versions.group_by(["product_key", "module_name", "module_version"]).aggregate(
        [([], "count_all")]
    )
    dist: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for row in grouped.to_pylist():
        key = (row["product_key"], row["module_name"])
        dist.setdefault(key, []).append((row["module_version"], row["count_all"]))
    drift = _drift_counts(findings)
    targets = _policy_targets(findings)
    # Groups with drift findings or more than one version first: that is where work is.
    # Only groups with drift or more than one version: a (product, module) every device
    # agrees on needs no attention.
    worth = [key for key in dist if drift.get(key, 0) or len(dist[key]) > 1]
    order = sorted(worth, key=lambda k: (-drift.get(k, 0), -len(dist[k]), k))
    lines = ["Versions per (product, module): devices per version, most common first"]
    for key in order[:_MAX_DRIFT_GROUPS]:
        counts = sorted(dist[key], key=lambda vc: (-vc[1], vc[0]))
        total = sum(n for _, n in counts)
        shown = ", ".join(
            f"{v} x{n} ({_percent(n, total).strip()})" for v, n in counts[:_MAX_VERSIONS_SHOWN]
        )
        more = len(counts) - _MAX_VERSIONS_SHOWN
        if more > 0:
            shown += f", +{more} more"
        target = f", target {targets[key]}" if key in targets else ""
        lines.append(
            f"  {key[0]}/{key[1]}: {total} devices, {drift.get(key, 0)} drift findings{target}"
        )
        lines.append(f"    {shown}")
    if len(order) > _MAX_DRIFT_GROUPS:
        lines.append(f"  ... and {len(order) - _MAX_DRIFT_GROUPS} more (product, module) pairs")
    return "\n".join(lines)


def _policy_targets(findings: pa.Table) -> dict[tuple[str, str], str]:
    """The policy's expected version per (product, module), as its drift findings say."""
    against_policy = findings.filter(
        pc.and_(
            pc.equal(findings["finding_type"], FindingType.VERSION_DRIFT),
            pc.equal(findings["severity"], Severity.WARNING),
        )
    )
    rows = against_policy.select(["product_key", "module_name", "expected_version"]).to_pydict()
    return {
        (pk, module): version
        for pk, module, version in zip(
            rows["product_key"], rows["module_name"], rows["expected_version"], strict=True
        )
    }


def _drift_counts(findings: pa.Table) -> dict[tuple[str, str], int]:
    drift = findings.filter(pc.equal(findings["finding_type"], FindingType.VERSION_DRIFT))
    grouped = drift.group_by(["product_key", "module_name"]).aggregate([([], "count_all")])
    return {(r["product_key"], r["module_name"]): r["count_all"] for r in grouped.to_pylist()}


def _tasks_section(manifest: Mapping[str, Any]) -> str:
    """How tasks were read, when not the default way (per device, with module versions)."""
    record = manifest.get("tasks")
    if not isinstance(record, Mapping):
        return ""  # a run of an older fleetaudit
    tasks_only = "modules" not in record.get("audit", ["modules"])
    if record.get("tasks_from") == "devices" and not tasks_only:
        return ""
    by_source = ", ".join(
        f"{n} {'not read' if k == 'not_read' else 'by ' + k}"
        for k, n in record.get("devices_by_source", {}).items()
    )
    lines = [
        f"Tasks from {record.get('tasks_from')}{' (tasks only)' if tasks_only else ''}: "
        f"devices {by_source or 'none'}"
    ]
    sweep = record.get("sweep")
    if isinstance(sweep, Mapping):
        lines.append(
            f"  sweep: {sweep['products_covered']} of {sweep['products']} products read "
            f"completely, {sweep['jobs']} jobs, {sweep['unfinished_tasks']} unfinished tasks; "
            f"{sweep['listings_failed']} failed listing(s), "
            f"{len(sweep['jobs_past_window'])} job(s) past the window: their products were "
            "read per device"
        )
        if sweep["tasks_outside_device_list"]:
            lines.append(
                f"  {sweep['tasks_outside_device_list']} tasks of "
                f"{sweep['devices_outside_device_list']} devices not in the device list "
                "(counted, not reported)"
            )
    if record.get("tasks_from") == "both":
        lines.append(
            f"  disagreements between the listings: {record.get('disagreements', 0)} "
            "(task_disagreements.parquet)"
        )
    return "\n".join(lines)


def _api_section(api: Mapping[str, Mapping[str, Any]]) -> str:
    if not api:
        return "API calls: none"
    # Counters, then latency percentiles in narrower cells: the widest action name and
    # every column still fit in 100 columns.
    head = _row("  action", ["calls", "retries", "throttled", "failures"], 31)
    lines = ["API calls", head + "".join(f"{c:>9}" for c in ("p50 ms", "p95 ms", "p99 ms"))]
    for action, stats in sorted(api.items()):
        cells = [_cell(stats.get(k)) for k in ("calls", "retries", "throttled", "failures")]
        latency = [_cell(stats.get(f"latency_ms_p{p}")) for p in (50, 95, 99)]
        lines.append(_row(f"  {action}", cells, 31) + "".join(f"{c:>9}" for c in latency))
    return "\n".join(lines)


def _files_section(run_dir: Path, manifest: Mapping[str, Any]) -> str:
    rows = manifest.get("rows", {})
    lines = [f"Reports in {run_dir}"]
    for table in RUN_TABLES:
        lines.append(f"  {table + '.parquet':<26}{rows.get(table, '?'):>10} rows")
    lines.append("  manifest.json")
    if (run_dir / "report.html").is_file():
        lines.append(f"  report.html (open it in a browser: {run_dir / 'report.html'})")
    return "\n".join(lines)


def _value_counts(table: pa.Table, column: str) -> dict[str, int]:
    grouped = table.group_by([column]).aggregate([([], "count_all")])
    return {row[column]: row["count_all"] for row in grouped.to_pylist()}


def _row(label: str, cells: Sequence[str], width: int) -> str:
    return f"{label:<{width}}" + "".join(f"{cell:>10}" for cell in cells)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _percent(n: int, total: int) -> str:
    return f"{100 * n / total:5.1f}%" if total else "    -"
