"""What changed, as text: the summary's first lines and `fleetaudit diff` (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fleetaudit.report.changes import summarize_changes
from fleetaudit.terms import Change


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


def format_diff(changes: pa.Table, older: str, newer: str, *, show: int) -> str:
    """`fleetaudit diff`: counts, then up to `show` rows of each kind of change."""
    lines = [
        f"fleetaudit diff {older} -> {newer}",
        format_changes(summarize_changes(changes, older)),
    ]
    for change in (Change.NEW, Change.RESOLVED):
        chosen = changes.filter(pc.equal(changes["change"], change))
        if chosen.num_rows:
            lines += ["", f"{change.capitalize()} findings ({chosen.num_rows}):"]
            for row in chosen.slice(0, show).to_pylist():
                device = f"{row['product_key']}/{row['device_name']}"
                module = row.get("module_name") or ""
                line = f"  {row['severity']:<8} {row['finding_type']:<22} {device} {module}"
                lines.append(line.rstrip())
            if chosen.num_rows > show:
                lines.append(f"  ... and {chosen.num_rows - show} more")
    moves = version_moves(changes)
    if moves:
        lines += ["", "Module versions moved (devices):"]
        for product_key, module, was, now, n in moves[:show]:
            lines.append(f"  {product_key}/{module}: {was} -> {now}  x{n}")
        if len(moves) > show:
            lines.append(f"  ... and {len(moves) - show} more")
    for change, title in ((Change.DEVICE_JOINED, "joined"), (Change.DEVICE_LEFT, "left")):
        rows = changes.filter(pc.equal(changes["change"], change))
        if rows.num_rows:
            shown = rows.slice(0, show).select(["product_key", "device_name"]).to_pylist()
            devices = ", ".join(f"{r['product_key']}/{r['device_name']}" for r in shown)
            more = f" and {rows.num_rows - show} more" if rows.num_rows > show else ""
            lines += ["", f"Devices {title} ({rows.num_rows}): {devices}{more}"]
    return "\n".join(lines)


def version_moves(changes: pa.Table) -> list[tuple[str, str, str, str, int]]:
    """(product, module, from, to, devices) per move, most devices first."""
    moved = changes.filter(pc.equal(changes["change"], Change.VERSION_CHANGED))
    keys = ["product_key", "module_name", "from_version", "to_version"]
    grouped = moved.select(keys).group_by(keys).aggregate([([], "count_all")]).to_pylist()
    grouped.sort(key=lambda r: (-r["count_all"], r["product_key"], r["module_name"]))
    return [
        (
            r["product_key"],
            r["module_name"],
            r["from_version"] or "(none)",
            r["to_version"] or "(none)",
            r["count_all"],
        )
        for r in grouped
    ]
