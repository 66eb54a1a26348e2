"""Trends from manifests and target shares from tables (report/trends.py, pure)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from fleetaudit.report.schema import rows_to_batch
from fleetaudit.report.trends import format_history, run_trend, target_shares

HOUR_MS = 3_600_000


def _manifest(run_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "started_at": "2026-01-01T02:00:00.000Z",
        "finished_at": "2026-01-01T02:10:00.000Z",
        "counts": {
            "devices": {"ok": 8, "not_found": 1, "error": 1},
            "findings": {"stalled_task": {"warning": 3}, "task_src_mismatch": {"critical": 2}},
            "findings_by_severity": {"critical": 2, "warning": 3, "info": 0},
        },
        **extra,
    }


def test_run_trend_reads_counts_changes_and_targets() -> None:
    """A schema-3 manifest gives every trend: statuses, types, stalled, new, targets."""
    trend = run_trend(
        _manifest(
            "R2",
            changes={"new": 4, "resolved": 1},
            gate={"verdict": "failed"},
            targets=[
                {"product_key": "pk", "module": "m", "version": "2", "devices": 8, "on_target": 6}
            ],
        )
    )
    assert trend.findings_by_type == {"stalled_task": 3, "task_src_mismatch": 2}
    assert (trend.stalled_tasks, trend.new, trend.resolved, trend.gate) == (3, 4, 1, "failed")
    [target] = trend.targets
    assert (target.label, target.share) == ("pk/m@2", 0.75)


def test_older_manifest_has_empty_cells_not_zeros() -> None:
    """A run from before schema 4 has no new/resolved counts: they read as unknown."""
    trend = run_trend(_manifest("R1"))
    assert (trend.new, trend.resolved, tuple(trend.targets)) == (None, None, ())
    text = format_history([trend], 0, finished_ms=[0])
    assert text.splitlines()[1].split()[-2:] == ["-", "-"]


def test_history_lines_and_target_shares() -> None:
    """One line per run with its age, and a line of shares per target, oldest first."""
    target = {"product_key": "pk", "module": "m", "version": "2", "devices": 10}
    trends = [
        run_trend(_manifest("R1", targets=[{**target, "on_target": 5}])),
        run_trend(
            _manifest("R2", changes={"new": 0, "resolved": 2}, targets=[{**target, "on_target": 7}])
        ),
    ]
    text = format_history(trends, 10 * HOUR_MS, finished_ms=[HOUR_MS, 9 * HOUR_MS])
    lines = text.splitlines()
    assert [line.split()[:2] for line in lines[1:3]] == [["R1", "9h"], ["R2", "1h"]]
    assert lines[-1] == "  pk/m@2: 50.0% 70.0%"


def test_target_shares_count_ok_devices_of_the_product() -> None:
    """Share = ok devices of the product (versions read) running the target version / those."""
    devices = pa.Table.from_batches(
        [
            rows_to_batch(
                "devices",
                [
                    {
                        "product_key": "pk",
                        "device_name": "a",
                        "audit_status": "ok",
                        "module_count": 1,
                    },
                    {
                        "product_key": "pk",
                        "device_name": "b",
                        "audit_status": "ok",
                        "module_count": 1,
                    },
                    {"product_key": "pk", "device_name": "c", "audit_status": "error"},
                    # Versions not read (sampled out): not in the share either way.
                    {"product_key": "pk", "device_name": "d", "audit_status": "ok"},
                ],
            )
        ]
    )
    versions = pa.Table.from_batches(
        [
            rows_to_batch(
                "module_versions",
                [
                    {"product_key": "pk", "device_name": d, "module_name": "m", "module_version": v}
                    for d, v in (("a", "2"), ("b", "1"), ("c", "2"))
                ],
            )
        ]
    )
    [share] = target_shares([("pk", "m", "2")], devices, versions)
    assert (share.devices, share.on_target) == (2, 1)
