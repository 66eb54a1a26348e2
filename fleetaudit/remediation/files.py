"""The run-directory files `fleetaudit cancel` reads and writes.

Reads the run's findings.parquet and manifest.json; writes cancel-plan.parquet (replaced on
every dry run), cancel-journal.jsonl (appended by every `--apply`: each line written and
fsynced before the step it records is taken, see ledger.py) and remediation.parquet
(rebuilt from the journal after every `--apply`). The Parquet writes are atomic: the old
file stays whole until the new one replaces it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fleetaudit.errors import UsageError
from fleetaudit.models import Device
from fleetaudit.remediation.ledger import KINDS
from fleetaudit.remediation.plan import DeviceKey, PlannedTask, TaskOutcome
from fleetaudit.report.schema import FINDINGS, REMEDIATION_TABLES, rows_to_batch
from fleetaudit.report.staging import write_table_atomic
from fleetaudit.terms import Table

FINDINGS_FILE = "findings.parquet"
MANIFEST_FILE = "manifest.json"
PLAN_FILE = "cancel-plan.parquet"
REMEDIATION_FILE = "remediation.parquet"
JOURNAL_FILE = "cancel-journal.jsonl"

# The findings columns a plan needs; reading only these keeps a large run's read small.
_PLAN_COLUMNS = (
    "finding_type",
    "product_key",
    "device_name",
    "iot_id",
    "module_name",
    "task_id",
    "task_status",
    "firmware_id",
    "job_id",
    "age_seconds",
)


def read_findings(run_dir: Path) -> list[dict[str, Any]]:
    """The run's findings rows (only the columns a plan needs); UsageError if absent."""
    path = run_dir / FINDINGS_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir}: not a complete run directory (no {FINDINGS_FILE})")
    table = pq.read_table(path, columns=list(_PLAN_COLUMNS), schema=FINDINGS)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def manifest_endpoint(run_dir: Path) -> str | None:
    """The endpoint the run audited, from its manifest's configuration (None if unrecorded)."""
    return manifest_text(run_dir, "endpoint")


def manifest_text(run_dir: Path, name: str) -> str | None:
    """A text setting the run was made with, from its manifest's configuration (None if
    unrecorded or unset); `endpoint` is also read from the manifest's top level."""
    path = run_dir / MANIFEST_FILE
    try:
        manifest = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        return None
    config = manifest.get("config")
    sources = [config if isinstance(config, dict) else {}]
    if name == "endpoint":
        sources.append(manifest)
    for source in sources:
        value = source.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def manifest_setting(run_dir: Path, name: str) -> object:
    """The value of setting `name` in the run manifest's `config` (None if unrecorded)."""
    try:
        manifest = orjson.loads((run_dir / MANIFEST_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None  # manifest_endpoint, read first, reports a broken manifest
    config = manifest.get("config") if isinstance(manifest, dict) else None
    return config.get(name) if isinstance(config, dict) else None


def device_keys(devices: Iterable[Device]) -> set[DeviceKey]:
    """The (product_key, device_name) pairs of a device list."""
    return {(device.product_key, device.device_name) for device in devices}


def write_plan(run_dir: Path, tasks: Sequence[PlannedTask]) -> Path:
    """Replace the run's cancel-plan.parquet with `tasks`; returns its path."""
    path = run_dir / PLAN_FILE
    write_table_atomic(path, pa.Table.from_batches([rows_to_batch(Table.CANCEL_PLAN, tasks)]))
    return path


def rebuild_outcomes(run_dir: Path, outcomes: Sequence[TaskOutcome]) -> Path:
    """Replace remediation.parquet with the journal's `outcomes`, batch by batch.

    Rows of batches the journal does not know (written before it existed) are kept first,
    so no batch is lost; within a batch the journal's order is kept.
    """
    path = run_dir / REMEDIATION_FILE
    schema = REMEDIATION_TABLES[Table.REMEDIATION]
    journaled = {o.batch_id for o in outcomes}
    ordered = sorted(outcomes, key=lambda o: (o.applied_at, o.batch_id))
    table = pa.Table.from_batches([rows_to_batch(Table.REMEDIATION, ordered)])
    if path.is_file():
        old = pq.read_table(path, schema=schema)
        keep = [b not in journaled for b in old.column("batch_id").to_pylist()]
        table = pa.concat_tables([old.filter(pa.array(keep, pa.bool_())), table])
    write_table_atomic(path, table)
    return path


class Journal:
    """RUN_DIR/cancel-journal.jsonl, opened for appending by the apply that holds the lock.

    `entries` is what was in the file when it was opened; a torn last line (the process
    died inside an append) is cut off then. `append` returns only once the line is on disk.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / JOURNAL_FILE
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.entries = self._recover()
            if created:
                _fsync_dir(run_dir)
        except BaseException:
            os.close(self._fd)
            raise

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        os.close(self._fd)

    def append(self, entry: Mapping[str, Any]) -> None:
        """Write one line and fsync it: durable before the caller takes the step it records."""
        os.write(self._fd, orjson.dumps(entry) + b"\n")
        os.fsync(self._fd)

    def extend(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Write several lines with one fsync (outcomes: nothing waits on each one)."""
        data = b"".join(orjson.dumps(entry) + b"\n" for entry in entries)
        if data:
            os.write(self._fd, data)
            os.fsync(self._fd)

    def read(self) -> list[dict[str, Any]]:
        """Every entry in the file now."""
        return _parse(self.path, _read_all(self._fd))[0]

    def _recover(self) -> list[dict[str, Any]]:
        data = _read_all(self._fd)
        entries, valid = _parse(self.path, data)
        if valid < len(data):
            os.ftruncate(self._fd, valid)
            os.fsync(self._fd)
        return entries


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _parse(path: Path, data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The entries of the journal's bytes and how many bytes hold whole lines."""
    entries: list[dict[str, Any]] = []
    valid = 0
    lines = data.splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            break  # a torn append: it never happened
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
            raise UsageError(f"{path}, line {number}: not a cancel journal entry")
        entries.append(entry)
        valid += len(line)
    return entries, valid


def _fsync_dir(path: Path) -> None:
    # A new file is durable only once its directory entry is.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
