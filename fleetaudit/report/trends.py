"""Trends over a series of runs, from their manifests: devices by status, findings by type and
severity, each target's on-target share, stalled tasks, what changed, freshness (pure).

A run records what its trends need in its manifest (`counts`, `changes`, `targets`), so a
history of a hundred runs reads a hundred small JSON files, never their tables. Runs from
before schema 4 lack `changes` and `targets`: those cells are empty, not zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fleetaudit.durations import format_duration
from fleetaudit.terms import AuditStatus, FindingType


@dataclass(frozen=True)
class TargetShare:
    """How many of a product's `ok` devices run a target's version of the module."""

    product_key: str
    module: str
    version: str
    devices: int
    on_target: int

    @property
    def label(self) -> str:
        return f"{self.product_key}/{self.module}@{self.version}"

    @property
    def share(self) -> float:
        return self.on_target / self.devices if self.devices else 0.0


@dataclass(frozen=True)
class RunTrend:
    """One run's point on every trend line."""

    run_id: str
    started_at: str
    finished_at: str
    devices: Mapping[str, int]
    findings_by_type: Mapping[str, int]
    findings_by_severity: Mapping[str, int]
    stalled_tasks: int
    targets: Sequence[TargetShare] = ()
    new: int | None = None  # None: the run predates changes.parquet
    resolved: int | None = None
    gate: str = "none"
    coverage_ok: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


def run_trend(manifest: Mapping[str, Any]) -> RunTrend:
    """One run's trend point, read from its manifest."""
    counts = manifest.get("counts", {})
    by_type = {t: sum(s.values()) for t, s in counts.get("findings", {}).items()}
    changes = manifest.get("changes")
    gate = manifest.get("gate")
    return RunTrend(
        run_id=str(manifest.get("run_id", "?")),
        started_at=str(manifest.get("started_at", "")),
        finished_at=str(manifest.get("finished_at", "")),
        devices=dict(counts.get("devices", {})),
        findings_by_type=by_type,
        findings_by_severity=dict(counts.get("findings_by_severity", {})),
        stalled_tasks=by_type.get(FindingType.STALLED_TASK, 0),
        targets=_targets(manifest.get("targets")),
        new=changes.get("new") if isinstance(changes, Mapping) else None,
        resolved=changes.get("resolved") if isinstance(changes, Mapping) else None,
        gate=str(gate.get("verdict", "none")) if isinstance(gate, Mapping) else "none",
        coverage_ok=bool(manifest.get("coverage_ok", True)),
    )


def _targets(recorded: object) -> list[TargetShare]:
    """A manifest's `targets`; an entry not of the expected form is left out, so that one
    odd manifest cannot break `history` or a page."""
    shares = []
    for entry in recorded if isinstance(recorded, list) else []:
        try:
            shares.append(TargetShare(**entry))
        except TypeError:
            continue
    return shares


def target_shares(
    targets: Sequence[tuple[str, str, str]], devices: pa.Table, module_versions: pa.Table
) -> list[TargetShare]:
    """Each (product, module, version) target's share of the product's `ok` devices whose
    versions were read (a sample's or a tasks-only audit's others say nothing of it)."""
    ok = devices.filter(pc.equal(devices["audit_status"], AuditStatus.OK))
    if "module_count" in ok.column_names:
        ok = ok.filter(pc.is_valid(ok["module_count"]))
    per_product = _counts(ok, "product_key")
    shares = []
    for product_key, module, version in targets:
        at_target = module_versions.filter(
            pc.and_(
                pc.and_(
                    pc.equal(module_versions["product_key"], product_key),
                    pc.equal(module_versions["module_name"], module),
                ),
                pc.equal(module_versions["module_version"], version),
            )
        )
        on_target = at_target.select(["product_key", "device_name"]).join(
            ok.select(["product_key", "device_name"]),
            keys=["product_key", "device_name"],
            join_type="left semi",
        )
        shares.append(
            TargetShare(
                product_key, module, version, per_product.get(product_key, 0), on_target.num_rows
            )
        )
    return shares


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    grouped = table.group_by([column]).aggregate([([], "count_all")])
    return {row[column]: row["count_all"] for row in grouped.to_pylist()}


def format_history(trends: Sequence[RunTrend], now_ms: int, *, finished_ms: Sequence[int]) -> str:
    """`fleetaudit history`: one line per run, oldest first, and each target's share."""
    if not trends:
        return "No published runs."
    statuses = [str(s) for s in AuditStatus]
    head = (
        f"{'run_id':<25}{'age':>8}{'gate':>8}"
        + "".join(f"{s:>10}" for s in statuses)
        + f"{'findings':>10}{'critical':>9}{'stalled':>8}{'new':>6}{'resolved':>9}"
    )
    lines = [head]
    for trend, finished in zip(trends, finished_ms, strict=True):
        age = format_duration(max(0, now_ms - finished) / 1000, parts=1) if finished else "?"
        cells = "".join(f"{trend.devices.get(s, 0):>10}" for s in statuses)
        findings = sum(trend.findings_by_type.values())
        critical = trend.findings_by_severity.get("critical", 0)
        new = "-" if trend.new is None else str(trend.new)
        resolved = "-" if trend.resolved is None else str(trend.resolved)
        untrusted = "" if trend.coverage_ok else " (untrusted)"
        lines.append(
            f"{trend.run_id:<25}{age:>8}{trend.gate:>8}{cells}{findings:>10}{critical:>9}"
            f"{trend.stalled_tasks:>8}{new:>6}{resolved:>9}{untrusted}"
        )
    labels = list(dict.fromkeys(t.label for trend in trends for t in trend.targets))
    if labels:
        lines += ["", "On-target share per target (oldest run first):"]
        for label in labels:
            points = []
            for trend in trends:
                share = next((t for t in trend.targets if t.label == label), None)
                points.append("-" if share is None else f"{100 * share.share:.1f}%")
            lines.append(f"  {label}: {' '.join(points)}")
    return "\n".join(lines)
