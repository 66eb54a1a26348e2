"""Comparing two runs part by part (report/compare.py) gives exactly the whole comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fleetaudit.report.changes import RunSide, compare_runs
from fleetaudit.report.compare import compare_part, device_parts, published_source
from fleetaudit.report.runs import open_run
from fleetaudit.report.schema import rows_to_batch
from fleetaudit.report.staging import run_relpath

NAMES = ["a1", "b1", "c22", "d-ü", "e", "f22", "g.x", "h99"]


def _publish(out: Path, run_id: str, tables: dict[str, list[dict[str, Any]]]) -> RunSide:
    run_dir = out / run_relpath(run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_bytes(orjson.dumps({"run_id": run_id, "series": "s"}))
    read: dict[str, pa.Table] = {}
    for name, rows in tables.items():
        read[name] = pa.Table.from_batches([rows_to_batch(name, rows)])
        pq.write_table(read[name], run_dir / f"{name}.parquet")
    return RunSide(run_id, 0, read["findings"], read["devices"], read["module_versions"])


def _run(names: list[str], version: str, drifting: set[str]) -> dict[str, list[dict[str, Any]]]:
    return {
        "devices": [
            {"product_key": "pk", "device_name": n, "audit_status": "ok", "module_count": 1}
            for n in names
        ],
        "module_versions": [
            {"product_key": "pk", "device_name": n, "module_name": "m", "module_version": version}
            for n in names
        ],
        "findings": [
            {
                "finding_type": "version_drift",
                "severity": "warning",
                "product_key": "pk",
                "device_name": n,
                "module_name": "m",
            }
            for n in sorted(drifting)
        ],
    }


def _sorted(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted((tuple(row.values()) for row in table.to_pylist()), key=repr)


def test_parts_add_up_to_the_whole(tmp_path: Path) -> None:
    """Every device lands in one part, also one only the previous run has."""
    before = _publish(
        tmp_path, "20260101T000000Z-aaaaaa", _run([*NAMES, "gone-Z"], "1", {"a1", "c22", "gone-Z"})
    )
    after = _publish(tmp_path, "20260102T000000Z-bbbbbb", _run(NAMES, "2", {"c22", "e", "h99"}))
    runs = [open_run(p.parent) for p in sorted(tmp_path.glob("run_date=*/run_id=*/manifest.json"))]
    previous, current = (published_source(run) for run in runs)
    parts = device_parts(current, part_devices=2)
    assert len(parts) > 3
    pieces = [compare_part(current, previous, where) for where in parts]
    whole = compare_runs(after, before)
    assert _sorted(pa.concat_tables(pieces)) == _sorted(whole)
    assert pa.concat_tables(pieces).num_rows == len(NAMES) + 1 + 3 + 1  # moved, left, findings
