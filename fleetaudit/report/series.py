"""A run's place in its series, worked out at the end of the run: what changed since the
previous run (committed as changes.parquet), each target's on-target share, and report.html
written into the run directory before it is published.

The previous run is read through runs.py; the staged run's own rows are read back here.
Changes are committed with a journal tag, so a run resumed after that commit does not
compare twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from fleetaudit.audit.findings import expected_versions
from fleetaudit.policy import Policy
from fleetaudit.report.changes import RunSide, compare_runs, summarize_changes
from fleetaudit.report.page import render_run_report
from fleetaudit.report.resume import committed_lookups
from fleetaudit.report.runs import SIDE_COLUMNS, open_run, previous_run, run_side, series_runs
from fleetaudit.report.schema import schema_for
from fleetaudit.report.staging import RunStaging, write_atomic
from fleetaudit.report.trends import target_shares
from fleetaudit.terms import Table

log = logging.getLogger(__name__)

CHANGES_TAG = "changes"
REPORT_FILE = "report.html"


def staged_table(staging: RunStaging, table: str, columns: Sequence[str]) -> pa.Table:
    """The committed rows of one staged table, only `columns`."""
    full = schema_for(table)
    schema = pa.schema([full.field(column) for column in columns])
    batches = [batch.select(list(columns)) for batch in staging.committed_batches(table)]
    return pa.Table.from_batches(batches, schema=schema)


def commit_changes(staging: RunStaging, series: str) -> dict[str, Any]:
    """Compare the staged run with the previous trusted run of `series` in its OUT, commit
    the rows as the changes table (once), and return the manifest's `changes` summary."""
    previous = previous_run(staging.out, series, staging.run_id)
    if CHANGES_TAG not in staging.committed_tags():
        current = RunSide(
            run_id=staging.run_id,
            started_at_ms=int(staging.meta["started_at_ms"]),
            findings=staged_table(staging, Table.FINDINGS, SIDE_COLUMNS[Table.FINDINGS]),
            devices=staged_table(staging, Table.DEVICES, SIDE_COLUMNS[Table.DEVICES]),
            module_versions=staged_table(
                staging, Table.MODULE_VERSIONS, SIDE_COLUMNS[Table.MODULE_VERSIONS]
            ),
        )
        rows = compare_runs(current, run_side(previous) if previous is not None else None)
        staging.append(Table.CHANGES, rows)
        staging.commit(CHANGES_TAG)
    committed = staged_table(staging, Table.CHANGES, ("change", "severity"))
    return summarize_changes(
        committed.to_pylist(), previous.run_id if previous is not None else None
    )


def target_records(staging: RunStaging, policy: Policy) -> list[dict[str, Any]]:
    """The manifest's `targets`: each resolved target and its on-target share."""
    firmware = {f.firmware_id: f for f in committed_lookups(staging).firmware}
    expected = expected_versions(policy, firmware)
    targets = [(pk, module, version) for (pk, module), version in expected.items()]
    if not targets:
        return []
    shares = target_shares(
        targets,
        staged_table(staging, Table.DEVICES, ("product_key", "device_name", "audit_status")),
        staged_table(
            staging,
            Table.MODULE_VERSIONS,
            ("product_key", "device_name", "module_name", "module_version"),
        ),
    )
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


def write_report(run_dir: Path, out: Path) -> Path:
    """report.html for the run in `run_dir` (published or about to be), with the earlier
    runs of its series in `out` as its history; written atomically, returns its path."""
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
