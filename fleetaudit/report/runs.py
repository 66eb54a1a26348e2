"""Earlier runs, read back: the one reader of published run directories under an OUT.

Everything that looks at past runs goes through here: the previous run a new run compares
itself with (changes.parquet), `fleetaudit diff`, `history` and the trends of report.html;
rolling audits, which carry device state forward from run to run, read it here too
(`device_state`). A published run is `OUT/run_date=D/run_id=ID/` with a manifest.json; a
staged run (`OUT/.staging`) is never one. Tables a run written by an older fleetaudit
lacks (changes.parquet before schema 4) read as empty tables with the current schema,
so callers never test for versions.

A *series* is the runs that audit the same thing and are compared with each other: the
`series` setting, by default the device list's absolute path (manifest `series`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fleetaudit.errors import UsageError
from fleetaudit.report.schema import schema_for
from fleetaudit.report.staging import latest_run
from fleetaudit.terms import AuditStatus, Table

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# The columns a comparison reads of each table (compare.py, changes.compare_runs).
SIDE_COLUMNS: Mapping[str, tuple[str, ...]] = {
    Table.FINDINGS: (
        "finding_type", "severity", "product_key", "device_name", "iot_id", "module_name",
        "observed_version", "task_id", "firmware_id", "job_id", "detail",
    ),
    Table.DEVICES: ("product_key", "device_name", "iot_id", "audit_status", "module_count"),
    Table.MODULE_VERSIONS: (
        "product_key", "device_name", "iot_id", "module_name", "module_version"
    ),
    Table.CHANGES: (
        "change", "finding_key", "first_seen_at", "first_seen_run_id", "finding_type",
        "severity", "product_key", "device_name", "iot_id", "module_name", "to_version",
        "task_id", "firmware_id", "job_id", "detail",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class PublishedRun:
    """A complete run directory and its manifest."""

    path: Path
    manifest: Mapping[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name.removeprefix("run_id="))

    @property
    def started_at_ms(self) -> int:
        return iso_ms(self.manifest.get("started_at"))

    @property
    def series(self) -> str | None:
        """Which series the run belongs to. A run written before series existed belongs to
        the default one, its device list's absolute path (so the first run after an upgrade
        compares with the last one before it, not with nothing)."""
        value = self.manifest.get("series")
        if isinstance(value, str):
            return value
        config = self.manifest.get("config")
        devices = config.get("devices") if isinstance(config, Mapping) else None
        return str(Path(devices).resolve()) if isinstance(devices, str) and devices else None

    @property
    def trusted(self) -> bool:
        """Complete, and its coverage met `min_coverage`: fit to compare with."""
        return self.manifest.get("status") == "complete" and bool(
            self.manifest.get("coverage_ok", True)
        )

    def table(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        """One of the run's tables (only `columns`, if given); empty if the run lacks it."""
        path = self.path / f"{name}.parquet"
        if path.is_file():
            return pq.read_table(path, columns=list(columns) if columns else None)
        schema = schema_for(name)
        if columns:
            schema = pa.schema([schema.field(column) for column in columns])
        return schema.empty_table()

    def batches(self, name: str, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """One of the run's tables batch by batch (nothing if the run lacks it)."""
        path = self.path / f"{name}.parquet"
        if path.is_file():
            # No pre-buffering: it would read every row group of the file up front.
            reader = pq.ParquetFile(path, pre_buffer=False)
            yield from reader.iter_batches(batch_size=65_536, columns=list(columns))

    def has_table(self, name: str) -> bool:
        return (self.path / f"{name}.parquet").is_file()


def iso_ms(text: object) -> int:
    """Epoch milliseconds of a manifest's ISO 8601 UTC time (0 when absent or malformed)."""
    if not isinstance(text, str):
        return 0
    try:
        return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


def open_run(run_dir: Path) -> PublishedRun:
    """The published run in `run_dir`; UsageError (exit 2) when it is not one."""
    try:
        manifest = orjson.loads((run_dir / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{run_dir} is not a finished run directory (no {MANIFEST})") from None
    except orjson.JSONDecodeError as error:
        raise UsageError(f"{run_dir / MANIFEST}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise UsageError(f"{run_dir / MANIFEST}: not a JSON object")
    return PublishedRun(run_dir, manifest)


def published_runs(out: Path) -> list[PublishedRun]:
    """Every published run under `out`, oldest first (by run id: its start time)."""
    runs = []
    for path in sorted(out.glob("run_date=*/run_id=*"), key=lambda p: p.name):
        if not (path / MANIFEST).is_file():
            continue
        try:
            runs.append(open_run(path))
        except UsageError as error:
            log.warning("skipping %s: %s", path, error)  # one bad run must not hide the rest
    return runs


def out_of(run_dir: Path) -> Path:
    """The OUT a published run directory lives in (OUT/run_date=D/run_id=ID)."""
    return run_dir.parent.parent


def previous_run(out: Path, series: str, before_run_id: str) -> PublishedRun | None:
    """The newest trusted run of `series` in `out` that started before `before_run_id`."""
    for run in reversed(published_runs(out)):
        if run.run_id < before_run_id and run.series == series and run.trusted:
            return run
    return None


def series_runs(out: Path, series: str | None, *, up_to: str | None = None) -> list[PublishedRun]:
    """The runs of one series (all runs when `series` is None), oldest first, optionally
    only those up to and including run id `up_to`."""
    return [
        run
        for run in published_runs(out)
        if (series is None or run.series == series) and (up_to is None or run.run_id <= up_to)
    ]


def device_state(run: PublishedRun) -> Iterator[pa.RecordBatch]:
    """The module versions of every device the run audited `ok`, batch by batch: the state
    a later run may carry forward for devices it does not call again."""
    devices = run.table(Table.DEVICES, ("product_key", "device_name", "audit_status"))
    ok = devices.filter(pa.compute.equal(devices["audit_status"], AuditStatus.OK))
    versions = run.table(Table.MODULE_VERSIONS, SIDE_COLUMNS[Table.MODULE_VERSIONS])
    kept = versions.join(
        ok.select(["product_key", "device_name"]),
        keys=["product_key", "device_name"],
        join_type="left semi",
    )
    yield from kept.to_batches()


def history_of(out: Path, series: str | None, *, now_ms: int) -> str:
    """`fleetaudit history`: the runs of `series` (default: LATEST's run's) in `out`."""
    from fleetaudit.report.trends import format_history, run_trend

    if not out.is_dir():
        raise UsageError(f"{out} is not a directory: give the OUT runs are written to")
    if series is None:
        latest = latest_run(out)
        series = open_run(latest).series if latest is not None else None
    runs = series_runs(out, series)
    head = f"Runs of series {series}" if series else "Every run"
    body = format_history(
        [run_trend(run.manifest) for run in runs],
        now_ms,
        finished_ms=[iso_ms(run.manifest.get("finished_at")) for run in runs],
    )
    return f"{head} in {out}, oldest first\n{body}"
