"""Arrow schemas of the report tables and the rows -> record batch conversion."""

from __future__ import annotations

import io
from dataclasses import fields
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetaudit.audit.join import task_row
from fleetaudit.models import (
    CallFailure,
    DeviceAudit,
    Finding,
    Firmware,
    Job,
    ModuleVersion,
    Task,
    TaskDisagreement,
)
from fleetaudit.report.schema import (
    REMEDIATION_TABLES,
    SCHEMA_VERSION,
    TABLES,
    rows_to_batch,
)
from fleetaudit.terms import Action, AuditStatus, FindingType, Severity

T0 = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z

SAMPLES: list[tuple[str, object]] = [
    ("devices", DeviceAudit("pk", "dev1", "iot1", AuditStatus.OK, 2, 1, None)),
    ("module_versions", ModuleVersion("pk", "dev1", "iot1", "default", "1.0.3")),
    (
        "firmware",
        Firmware(
            "0167",
            "fw",
            "pk",
            "prod",
            "default",
            "1.0",
            "1.1",
            1,
            0,
            "MD5",
            "abc",
            5_000_000_000,
            100,
            "https://oss.example/fw.bin",
            T0,
            T0,
        ),
    ),
    ("jobs", Job("j1", "0167", "pk", "IN_PROGRESS", "UPGRADE_FIRMWARE", "STATIC", T0, None)),
    (
        "findings",
        Finding(
            FindingType.STALLED_TASK,
            Severity.WARNING,
            "pk",
            "dev1",
            "iot1",
            "default",
            "1.0",
            "1.1",
            "t1",
            "QUEUED",
            "0167",
            "j1",
            90_000,
            "Task t1 has been QUEUED for 25 hours.",
        ),
    ),
    ("errors", CallFailure(Action.QUERY_FIRMWARE, "pk", None, "0167", None, "X", "m", 500, 3, "r")),
]

MODEL_OF_TABLE = {
    "devices": DeviceAudit,
    "module_versions": ModuleVersion,
    "tasks": Task,
    "firmware": Firmware,
    "jobs": Job,
    "findings": Finding,
    "errors": CallFailure,
    "task_disagreements": TaskDisagreement,
}

TASK = Task(
    "t1", "j1", "0167", "pk", "prod", "dev1", "iot1", "default", "1.0", "1.1", "QUEUED", T0, T0
)


def test_run_tables_in_contract_order() -> None:
    """TABLES lists the contract's seven run tables in its order, then the project's own."""
    assert list(TABLES) == [
        "devices", "module_versions", "tasks", "firmware", "jobs", "findings", "errors",
        "task_disagreements",
    ]  # fmt: skip
    assert list(REMEDIATION_TABLES) == ["cancel_plan", "remediation"]


@pytest.mark.parametrize("table", [*TABLES, *REMEDIATION_TABLES])
def test_schema_carries_its_version(table: str) -> None:
    """Every schema records schema_version in its metadata."""
    schema = {**TABLES, **REMEDIATION_TABLES}[table]
    assert schema.metadata == {b"schema_version": str(SCHEMA_VERSION).encode()}


@pytest.mark.parametrize(("table", "model"), sorted(MODEL_OF_TABLE.items()))
def test_every_model_field_is_a_column(table: str, model: type) -> None:
    """Each models.py field has a column of the same name, so rows are read by name."""
    assert {f.name for f in fields(model)} <= set(TABLES[table].names)


@pytest.mark.parametrize(("table", "row"), SAMPLES, ids=[t for t, _ in SAMPLES])
def test_dataclass_row_round_trips(table: str, row: object) -> None:
    """A dataclass row becomes one batch row with every field's value."""
    batch = rows_to_batch(table, [row])
    assert batch.schema == TABLES[table]
    got = batch.to_pylist()[0]
    for field in fields(row):  # type: ignore[arg-type]
        value = getattr(row, field.name)
        if field.name.startswith("utc_") and value is not None:
            value = datetime.fromtimestamp(value / 1000, tz=UTC)
        assert got[field.name] == value, field.name


def test_dict_rows_are_read_by_name_and_missing_columns_are_null() -> None:
    """A dict row fills the columns it names; the others are null."""
    batch = rows_to_batch("devices", [{"device_name": "d", "product_key": "p", "module_count": 3}])
    row = batch.to_pylist()[0]
    assert row["product_key"] == "p"
    assert row["module_count"] == 3
    assert row["iot_id"] is None


def test_task_row_adds_age() -> None:
    """task_row turns a Task and its age into a tasks row with age_seconds."""
    batch = rows_to_batch("tasks", [task_row(TASK, 3600)])
    row = batch.to_pylist()[0]
    assert row["age_seconds"] == 3600
    assert row["task_id"] == "t1"


def test_dataclass_and_dict_rows_mix() -> None:
    """A batch may mix dataclass rows and dict rows."""
    batch = rows_to_batch("tasks", [TASK, task_row(TASK, 7)])
    assert batch.column("age_seconds").to_pylist() == [None, 7]


def test_epoch_millis_become_utc_timestamps() -> None:
    """Epoch milliseconds are stored as timestamp[ms, UTC] without loss."""
    batch = rows_to_batch("jobs", [{"job_id": "j", "utc_create": T0}])
    assert batch.schema.field("utc_create").type == pa.timestamp("ms", tz="UTC")
    assert batch.column("utc_create").cast(pa.int64()).to_pylist() == [T0]


@pytest.mark.parametrize("table", [*TABLES, *REMEDIATION_TABLES])
def test_empty_rows_give_full_schema(table: str) -> None:
    """No rows gives an empty batch that still has every column."""
    batch = rows_to_batch(table, [])
    assert batch.num_rows == 0
    assert batch.schema == {**TABLES, **REMEDIATION_TABLES}[table]


def test_unknown_table_is_rejected() -> None:
    """An unknown table name is a ValueError naming it."""
    with pytest.raises(ValueError, match="nope"):
        rows_to_batch("nope", [])


def test_wrong_type_is_rejected() -> None:
    """A value of the wrong type fails instead of being coerced silently."""
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        rows_to_batch("devices", [{"product_key": "p", "module_count": "three"}])


_text = st.none() | st.text(max_size=20)


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "finding_type": st.text(min_size=1, max_size=20),
                "severity": st.sampled_from(["critical", "warning", "info"]),
                "product_key": st.text(max_size=12),
                "device_name": _text,
                "observed_version": _text,
                "age_seconds": st.none() | st.integers(-(2**63), 2**63 - 1),
                "detail": st.text(max_size=40),
            }
        ),
        max_size=20,
    )
)
def test_findings_round_trip_through_parquet(rows: list[dict[str, object]]) -> None:
    """Any findings rows survive a Parquet write and read unchanged."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_batches([rows_to_batch("findings", rows)]), buffer)
    back = pq.read_table(io.BytesIO(buffer.getvalue())).to_pylist()
    assert [{k: r[k] for k in row} for r, row in zip(back, rows, strict=True)] == rows
