"""The report contract (docs/REPORTS.md) and the Arrow schemas agree."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from fleetaudit.report.schema import TABLES

CONTRACT = Path(__file__).parent.parent / "docs" / "REPORTS.md"
_TYPES = {"int32": pa.int32(), "int64": pa.int64()}
# A column is a backticked name, optionally followed by one parenthesised remark: a type,
# the allowed values or a note. Values inside the remark are not columns.
_COLUMN = re.compile(r"`([a-z_]+)`(?:\s*\(([^()]*)\))?")


ADDITIONS = "## What this project adds"


def _contract_tables(*, additions: bool = True) -> dict[str, list[tuple[str, str | None]]]:
    """Tables of the shared contract's table section, and of the project's additions."""
    text = CONTRACT.read_text(encoding="utf-8")
    section = text.split("## Tables (required columns)", 1)[1].split("\n## ", 1)[0]
    if additions:
        section += "\n\n" + text.split(ADDITIONS, 1)[1]
    tables: dict[str, list[tuple[str, str | None]]] = {}
    for paragraph in section.split("\n\n"):
        head = re.match(r"\*\*([a-z_.]+)\*\*:(.*)", paragraph.strip(), re.DOTALL)
        if head is None or head.group(1).endswith(".json"):
            continue
        body = " ".join(line for line in head.group(2).splitlines() if not line.startswith("|"))
        tables[head.group(1)] = [(m.group(1), m.group(2)) for m in _COLUMN.finditer(body)]
    return tables


CONTRACT_TABLES = _contract_tables()
SHARED_TABLES = _contract_tables(additions=False)


def test_contract_lists_every_table() -> None:
    """Every run table is the shared contract's seven or one the project's section adds."""
    assert set(SHARED_TABLES) <= set(TABLES)
    assert len(SHARED_TABLES) == 7
    assert set(TABLES) <= set(CONTRACT_TABLES)
    assert len(TABLES) == 8


@pytest.mark.parametrize("table", sorted(TABLES))
def test_contract_columns_exist_in_order(table: str) -> None:
    """Every column the contract lists is in the schema, in the contract's order."""
    names = TABLES[table].names
    listed = [name for name, _ in CONTRACT_TABLES[table]]
    assert listed, f"no columns parsed for {table}"
    missing = [name for name in listed if name not in names]
    assert not missing
    assert sorted(listed, key=names.index) == listed


@pytest.mark.parametrize("table", sorted(TABLES))
def test_contract_types_hold(table: str) -> None:
    """Stated int types, timestamps (ms, UTC) and string ids/versions match the schema."""
    schema = TABLES[table]
    for name, remark in CONTRACT_TABLES[table]:
        actual = schema.field(name).type
        if remark in _TYPES:
            assert actual == _TYPES[remark], name
        elif name.startswith("utc_"):
            assert actual == pa.timestamp("ms", tz="UTC"), name
        elif name.endswith(("_id", "_version", "_key", "_name")):
            assert actual == pa.string(), name


def test_partition_columns_are_not_in_files() -> None:
    """run_date and run_id live in the path only, never inside a table."""
    for schema in TABLES.values():
        assert "run_date" not in schema.names
        assert "run_id" not in schema.names


def test_layout_lists_every_table_file() -> None:
    """The report layout (with the project's added files) names each table's Parquet file."""
    text = CONTRACT.read_text(encoding="utf-8")
    block = text.split("## Report layout", 1)[1].split("```", 2)[1]
    files = set(re.findall(r"([a-z_]+)\.parquet", block))
    added = set(re.findall(r"`([a-z_]+)\.parquet`", text.split(ADDITIONS, 1)[1]))
    assert files | added >= set(TABLES)
    assert files == set(SHARED_TABLES)
    assert "manifest.json" in block


SHARED_CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "docs" / "REPORTS.md"


@pytest.mark.skipif(not SHARED_CONTRACT.is_file(), reason="no shared/ checkout beside the repo")
def test_in_repo_contract_starts_with_the_shared_one() -> None:
    """docs/REPORTS.md is the shared contract unchanged, with the project's additions after it."""
    shared = SHARED_CONTRACT.read_text(encoding="utf-8").rstrip("\n")
    assert CONTRACT.read_text(encoding="utf-8").startswith(shared)
