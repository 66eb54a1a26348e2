"""A run's place in its series, worked out at the end of the run: what changed since the
previous run (committed as changes.parquet), each target's on-target share, and report.html
written into the run directory before it is published.

The previous run is read through runs.py; the staged run's own rows are read back here.
Changes are committed with a journal tag, so a run resumed after that commit does not
compare twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fleetaudit.audit.findings import expected_versions
from fleetaudit.policy import Policy
from fleetaudit.report.changes import summarize_changes
from fleetaudit.report.compare import (
    Source,
    compare_part,
    device_parts,
    published_source,
    release_memory,
)
from fleetaudit.report.page import render_run_report
from fleetaudit.report.resume import committed_lookups
from fleetaudit.report.runs import open_run, previous_run, series_runs
from fleetaudit.report.staging import RunStaging, write_atomic
from fleetaudit.report.trends import target_shares
from fleetaudit.terms import Table

log = logging.getLogger(__name__)

CHANGES_TAG = "changes"
REPORT_FILE = "report.html"


def staged_source(staging: RunStaging) -> Source:
    """The staged run's committed parts as a comparison reads them."""
    started = int(staging.meta["started_at_ms"])
    return Source(staging.run_id, started, staging.committed_files, has_changes=False)


def commit_changes(staging: RunStaging, series: str) -> dict[str, Any]:
    """Compare the staged run with the previous trusted run of `series` in its OUT, part by
    part (compare.py), commit each part's rows as the changes table, and return the
    manifest's `changes` summary. Each part is committed with its own tag, so a resumed
    run compares only the parts it had not committed (the parts are the same: every
    device is committed by now)."""
    previous = previous_run(staging.out, series, staging.run_id)
    before = published_source(previous) if previous is not None else None
    current = staged_source(staging)
    done = staging.committed_tags()
    for number, where in enumerate(device_parts(current)):
        tag = f"{CHANGES_TAG}:{number}"
        if tag not in done:
            staging.append_table(Table.CHANGES, compare_part(current, before, where))
            staging.commit(tag)
            release_memory()
    committed = current.read(Table.CHANGES, ("change", "severity"), None)
    return summarize_changes(committed, previous.run_id if previous is not None else None)


def target_records(staging: RunStaging, policy: Policy) -> list[dict[str, Any]]:
    """The manifest's `targets`: each resolved target and its on-target share (only the
    rows of the targets' products are read)."""
    firmware = {f.firmware_id: f for f in committed_lookups(staging).firmware}
    expected = expected_versions(policy, firmware)
    targets = [(pk, module, version) for (pk, module), version in expected.items()]
    if not targets:
        return []
    source = staged_source(staging)
    devices = source.read(
        Table.DEVICES, ("product_key", "device_name", "audit_status", "module_count"), None
    )
    columns = ("product_key", "device_name", "module_name", "module_version")
    versions = source.read(Table.MODULE_VERSIONS, columns, None, keep=_targeted(targets))
    shares = target_shares(targets, devices, versions)
    return [
        {
            "product_key": s.product_key,
            "module": s.module,
            "version": s.version,
            "devices": s.devices,
            "on_target": s.on_target,
        }
        for s in shares
    ]


def _targeted(targets: Sequence[tuple[str, str, str]]) -> Callable[[pa.RecordBatch], pa.Array]:
    """A batch filter keeping the rows of the targets' (product, module) pairs."""
    pairs = sorted({(product_key, module) for product_key, module, _ in targets})

    def keep(batch: pa.RecordBatch) -> pa.Array:
        mask = pa.array([False] * batch.num_rows)
        for product_key, module in pairs:
            pair = pc.and_(
                pc.equal(batch.column("product_key"), product_key),
                pc.equal(batch.column("module_name"), module),
            )
            mask = pc.or_(mask, pc.fill_null(pair, False))
        return mask

    return keep


def write_report(run_dir: Path, out: Path) -> Path:
    """report.html for the run in `run_dir` (published or about to be), with the earlier
    runs of its series in `out` as its history; written atomically, returns its path."""
    release_memory()  # what the end of the run used is not needed for the page
    run = open_run(run_dir)
    earlier = [r for r in series_runs(out, run.series, up_to=run.run_id) if r.run_id != run.run_id]
    path = run_dir / REPORT_FILE
    write_atomic(path, render_run_report(run, earlier).encode("utf-8"))
    return path


def write_report_quietly(run_dir: Path, *, out: Path) -> None:
    """write_report for the end of a run: a report that cannot be drawn must not keep the
    run's tables from being published, so any failure is a warning naming the way back."""
    try:
        write_report(run_dir, out)
    except Exception as error:  # the tables matter more than the page about them
        log.warning(
            "report.html was not written (%s: %s); `fleetaudit report RUN_DIR` writes it",
            type(error).__name__,
            error,
        )
