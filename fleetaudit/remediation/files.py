"""The run-directory files `fleetaudit cancel` reads and writes.

Reads the run's findings.parquet and manifest.json; writes cancel-plan.parquet (replaced on
every dry run) and remediation.parquet (one batch appended per `--apply`, never
overwritten). Both writes are atomic: the old file stays whole until the new one replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fleetaudit.errors import UsageError
from fleetaudit.models import Device
from fleetaudit.remediation.plan import DeviceKey, PlannedTask, TaskOutcome
from fleetaudit.report.schema import FINDINGS, REMEDIATION_TABLES, rows_to_batch
from fleetaudit.report.staging import write_table_atomic
from fleetaudit.terms import Table

FINDINGS_FILE = "findings.parquet"
MANIFEST_FILE = "manifest.json"
PLAN_FILE = "cancel-plan.parquet"
REMEDIATION_FILE = "remediation.parquet"

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
    return manifest_setting(run_dir, "endpoint")


def manifest_setting(run_dir: Path, name: str) -> str | None:
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


def device_keys(devices: Iterable[Device]) -> set[DeviceKey]:
    """The (product_key, device_name) pairs of a device list."""
    return {(device.product_key, device.device_name) for device in devices}


def write_plan(run_dir: Path, tasks: Sequence[PlannedTask]) -> Path:
    """Replace the run's cancel-plan.parquet with `tasks`; returns its path."""
    path = run_dir / PLAN_FILE
    write_table_atomic(path, pa.Table.from_batches([rows_to_batch(Table.CANCEL_PLAN, tasks)]))
    return path


def append_outcomes(run_dir: Path, outcomes: Sequence[TaskOutcome]) -> Path:
    """Append one batch of outcomes to the run's remediation.parquet; returns its path.

    The file is small (one row per planned task per apply), so appending reads it whole,
    adds the batch and atomically replaces it: a crash leaves the previous batches intact.
    """
    path = run_dir / REMEDIATION_FILE
    schema = REMEDIATION_TABLES[Table.REMEDIATION]
    batch = pa.Table.from_batches([rows_to_batch(Table.REMEDIATION, outcomes)])
    if path.is_file():
        batch = pa.concat_tables([pq.read_table(path, schema=schema), batch])
    write_table_atomic(path, batch)
    return path
