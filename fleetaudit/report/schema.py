"""The Arrow schema of every report table, and rows -> record batches.

The schemas are the contract of docs/REPORTS.md in code (tests/test_contract.py checks the
two agree). Column names are the field names of fleetaudit/models.py, so a row may be one
of those dataclasses or a plain dict; either is read by column name and a missing column is
null. Timestamps arrive as UTC epoch milliseconds (`int`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from fleetaudit.terms import Table

SCHEMA_VERSION = 4

_STR = pa.string()
_I32 = pa.int32()
_I64 = pa.int64()
_TS = pa.timestamp("ms", tz="UTC")


def _schema(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema(
        [pa.field(name, dtype) for name, dtype in columns],
        metadata={"schema_version": str(SCHEMA_VERSION)},
    )


DEVICES = _schema(
    ("product_key", _STR),
    ("device_name", _STR),
    ("iot_id", _STR),
    ("audit_status", _STR),
    ("module_count", _I32),
    ("unfinished_task_count", _I32),
    ("error_code", _STR),
    ("tasks_source", _STR),  # "device" | "job" | "both"; null: its tasks were not read
)

MODULE_VERSIONS = _schema(
    ("product_key", _STR),
    ("device_name", _STR),
    ("iot_id", _STR),
    ("module_name", _STR),
    ("module_version", _STR),
)

TASKS = _schema(
    ("task_id", _STR),
    ("job_id", _STR),
    ("firmware_id", _STR),
    ("product_key", _STR),
    ("product_name", _STR),
    ("device_name", _STR),
    ("iot_id", _STR),
    ("module_name", _STR),
    ("src_version", _STR),
    ("dest_version", _STR),
    ("task_status", _STR),
    ("utc_create", _TS),
    ("utc_modified", _TS),
    ("age_seconds", _I64),
    # From ListOTATaskByJob only (null from the per-device listing).
    ("progress", _I32),
    ("task_desc", _STR),
    ("job_timeout_minutes", _I32),
)

FIRMWARE = _schema(
    ("firmware_id", _STR),
    ("firmware_name", _STR),
    ("product_key", _STR),
    ("product_name", _STR),
    ("module_name", _STR),
    ("src_version", _STR),
    ("dest_version", _STR),
    ("status", _I32),
    ("type", _I32),
    ("sign_method", _STR),
    ("firmware_sign", _STR),
    ("firmware_size", _I64),
    ("verify_progress", _I32),
    ("firmware_url", _STR),
    ("utc_create", _TS),
    ("utc_modified", _TS),
)

JOBS = _schema(
    ("job_id", _STR),
    ("firmware_id", _STR),
    ("product_key", _STR),
    ("job_status", _STR),
    ("job_type", _STR),
    ("target_selection", _STR),
    ("utc_create", _TS),
    ("utc_modified", _TS),
)

FINDINGS = _schema(
    ("finding_type", _STR),
    ("severity", _STR),
    ("product_key", _STR),
    ("device_name", _STR),
    ("iot_id", _STR),
    ("module_name", _STR),
    ("observed_version", _STR),
    ("expected_version", _STR),
    ("task_id", _STR),
    ("task_status", _STR),
    ("firmware_id", _STR),
    ("job_id", _STR),
    ("age_seconds", _I64),
    ("detail", _STR),
)

ERRORS = _schema(
    ("action", _STR),
    ("product_key", _STR),
    ("device_name", _STR),
    ("firmware_id", _STR),
    ("job_id", _STR),
    ("error_code", _STR),
    ("error_message", _STR),
    ("http_status", _I32),
    ("attempts", _I32),
    ("request_id", _STR),
)

TASK_DISAGREEMENTS = _schema(
    ("kind", _STR),  # "only_by_device" | "only_by_job" | "status_differs"
    ("product_key", _STR),
    ("device_name", _STR),
    ("task_id", _STR),
    ("job_id", _STR),
    ("firmware_id", _STR),
    ("module_name", _STR),
    ("status_by_device", _STR),
    ("status_by_job", _STR),
)

# What changed since the previous complete run of the same series (docs/REPORTS.md): one
# row per finding of this run (new or persisting), per finding it no longer has
# (resolved), per module version that moved and per device that joined or left the list.
CHANGES = _schema(
    ("change", _STR),  # terms.Change
    ("finding_key", _STR),  # stable across runs; null for device-level changes
    ("finding_type", _STR),
    ("severity", _STR),
    ("product_key", _STR),
    ("device_name", _STR),
    ("iot_id", _STR),
    ("module_name", _STR),
    ("task_id", _STR),
    ("firmware_id", _STR),
    ("job_id", _STR),
    ("from_version", _STR),
    ("to_version", _STR),
    ("first_seen_at", _TS),
    ("first_seen_run_id", _STR),
    ("previous_run_id", _STR),
    ("detail", _STR),
)

CANCEL_PLAN = _schema(
    ("product_key", _STR),
    ("device_name", _STR),
    ("iot_id", _STR),
    ("module_name", _STR),
    ("task_id", _STR),
    ("task_status", _STR),
    ("firmware_id", _STR),
    ("job_id", _STR),
    ("finding_type", _STR),
    ("age_seconds", _I64),
    ("call_index", _I32),
)

REMEDIATION = _schema(
    ("batch_id", _STR),
    ("applied_at", _TS),
    ("product_key", _STR),
    ("device_name", _STR),
    ("task_id", _STR),
    ("firmware_id", _STR),
    ("job_id", _STR),
    ("task_status_before", _STR),
    ("outcome", _STR),  # "cancelled" | "still_open" | "already_finished" | "failed"
    ("error_code", _STR),
    ("error_message", _STR),
    ("request_id", _STR),
)

# The eight tables of every complete run, in the contract's order.
TABLES: Mapping[str, pa.Schema] = {
    Table.DEVICES: DEVICES,
    Table.MODULE_VERSIONS: MODULE_VERSIONS,
    Table.TASKS: TASKS,
    Table.FIRMWARE: FIRMWARE,
    Table.JOBS: JOBS,
    Table.FINDINGS: FINDINGS,
    Table.ERRORS: ERRORS,
    Table.TASK_DISAGREEMENTS: TASK_DISAGREEMENTS,
}

# Every table of a complete run: the staged ones above and changes, written at the end.
RUN_TABLES: Mapping[str, pa.Schema] = {**TABLES, Table.CHANGES: CHANGES}

# Written by `fleetaudit cancel` into an existing run directory.
REMEDIATION_TABLES: Mapping[str, pa.Schema] = {
    Table.CANCEL_PLAN: CANCEL_PLAN,
    Table.REMEDIATION: REMEDIATION,
}

ALL_TABLES: Mapping[str, pa.Schema] = {**RUN_TABLES, **REMEDIATION_TABLES}


def schema_for(table: str) -> pa.Schema:
    """The schema of a run or remediation table; a ValueError names an unknown table."""
    try:
        return ALL_TABLES[table]
    except KeyError:
        raise ValueError(f"unknown report table {table!r}") from None


def _column(rows: Sequence[object], name: str) -> list[object]:
    # Dicts and dataclasses may mix (a Task plus its age as a dict is still one row each);
    # both are read by name so the models and the schema only have to agree on names.
    return [row.get(name) if isinstance(row, Mapping) else getattr(row, name, None) for row in rows]


def rows_to_batch(table: str, rows: Sequence[object]) -> pa.RecordBatch:
    """Rows (models.py dataclasses or dicts, read by column name) as one batch of `table`."""
    schema = schema_for(table)
    if not rows:
        return _empty_batch(schema)
    arrays = [pa.array(_column(rows, field.name), type=field.type) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([], type=field.type) for field in schema], schema=schema
    )
