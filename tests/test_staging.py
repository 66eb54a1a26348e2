"""Staged run output: commit journal, resume after a crash, atomic finalize and LATEST."""

from __future__ import annotations

import os
import random
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetaudit.durations import time_id
from fleetaudit.models import DeviceAudit, Finding
from fleetaudit.report.schema import RUN_TABLES, TABLES, rows_to_batch
from fleetaudit.report.staging import (
    RunStaging,
    latest_run,
    remove_stale_staging,
    run_date_of,
    run_relpath,
    write_atomic,
    write_table_atomic,
)
from fleetaudit.terms import AuditStatus, FindingType, Severity

START_MS = 1_732_009_663_000  # 2024-11-19T09:47:43Z
RUN_ID = "20241119T094743Z-00abcd"
GLOB = "run_date=*/run_id=*/findings.parquet"


def _finding(device: str, severity: str = "warning") -> Finding:
    return Finding(
        FindingType.STALLED_TASK,
        Severity(severity),
        "pk",
        device,
        None,
        "default",
        None,
        None,
        "t-" + device,
        "QUEUED",
        "0167",
        "j1",
        90_000,
        "Stalled.",
    )


def _device(device: str) -> DeviceAudit:
    return DeviceAudit("pk", device, None, AuditStatus.OK, 1, 1, None)


def _staged(out: Path, *devices: str) -> RunStaging:
    staging = RunStaging.create(out, RUN_ID, {"now_ms": START_MS})
    for device in devices:
        staging.append("devices", [_device(device)])
        staging.append("findings", [_finding(device)])
        staging.commit()
    return staging


def _resumed(out: Path) -> RunStaging:
    """The staged run under `out` reopened, failing if there is none or it was already published."""
    staging = RunStaging.resume_newest(out)
    assert isinstance(staging, RunStaging)
    return staging


def _devices(staging: RunStaging) -> list[str]:
    return [d for b in staging.committed_batches("devices") for d in b["device_name"].to_pylist()]


def test_time_id_is_utc_time_and_six_hex() -> None:
    """A run or batch id is the UTC time, then 6 hex characters of the given random bits."""
    run_id = time_id(START_MS, random.Random(1).getrandbits(24))
    assert run_id.startswith("20241119T094743Z-")
    assert len(run_id) == 23
    int(run_id[-6:], 16)
    assert run_date_of(run_id) == "2024-11-19"


def test_run_path_uses_start_date() -> None:
    """The partition path comes from the run id's start date."""
    assert run_relpath(RUN_ID) == f"run_date=2024-11-19/run_id={RUN_ID}"


def test_create_saves_meta(tmp_path: Path) -> None:
    """Settings given at create come back when the run is reopened."""
    RunStaging.create(tmp_path, RUN_ID, {"qps": 10, "policy": {"QUEUED": "24h"}})
    reopened = _resumed(tmp_path)
    assert reopened.run_id == RUN_ID
    assert reopened.meta == {"qps": 10, "policy": {"QUEUED": "24h"}}


def test_round_trip_with_pyarrow(tmp_path: Path) -> None:
    """Committed rows of every commit end up in the final table, in commit order."""
    run_dir = _staged(tmp_path, "a", "b", "c").finalize({"run_id": RUN_ID})
    assert run_dir == tmp_path / run_relpath(RUN_ID)
    table = pq.read_table(run_dir / "devices.parquet")
    assert table.column("device_name").to_pylist() == ["a", "b", "c"]
    assert table.schema.equals(TABLES["devices"], check_metadata=False)


def test_duckdb_reads_hive_partitions(tmp_path: Path) -> None:
    """DuckDB over the contract's glob sees run_date/run_id from the path, not the files."""
    _staged(tmp_path, "a", "b").finalize({})
    relation = duckdb.sql(
        f"SELECT CAST(run_date AS VARCHAR), run_id, device_name "
        f"FROM read_parquet('{tmp_path}/{GLOB}', hive_partitioning = true) ORDER BY device_name"
    )
    assert relation is not None
    assert relation.fetchall() == [("2024-11-19", RUN_ID, "a"), ("2024-11-19", RUN_ID, "b")]
    file_columns = pq.read_schema(tmp_path / run_relpath(RUN_ID) / "findings.parquet").names
    assert "run_date" not in file_columns
    assert "run_id" not in file_columns


def test_every_table_exists_when_empty(tmp_path: Path) -> None:
    """A run with no rows still has every table (changes too), each with its full schema."""
    run_dir = RunStaging.create(tmp_path, RUN_ID, {}).finalize({})
    for table, schema in RUN_TABLES.items():
        data = pq.read_table(run_dir / f"{table}.parquet")
        assert data.num_rows == 0
        assert data.schema.equals(schema, check_metadata=False)


def test_manifest_gets_rows_per_table(tmp_path: Path) -> None:
    """finalize writes manifest.json with the caller's keys and rows per table."""
    run_dir = _staged(tmp_path, "a", "b").finalize({"run_id": RUN_ID, "status": "complete"})
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["run_id"] == RUN_ID
    assert manifest["rows"] == {t: 2 if t in ("devices", "findings") else 0 for t in RUN_TABLES}


def test_finalize_commits_pending_rows(tmp_path: Path) -> None:
    """Rows appended but not yet committed are committed by finalize."""
    staging = _staged(tmp_path, "a")
    staging.append("devices", [_device("b")])
    run_dir = staging.finalize({})
    assert pq.read_table(run_dir / "devices.parquet").num_rows == 2


def test_nothing_matches_glob_before_finalize(tmp_path: Path) -> None:
    """A staged run, however far along, is invisible to the report glob."""
    staging = _staged(tmp_path, "a", "b")
    assert list(tmp_path.glob(GLOB)) == []
    assert latest_run(tmp_path) is None
    staging.finalize({})
    assert len(list(tmp_path.glob(GLOB))) == 1


def test_finalize_removes_staging(tmp_path: Path) -> None:
    """After finalize nothing of the run is left under .staging."""
    _staged(tmp_path, "a").finalize({})
    assert list((tmp_path / ".staging").iterdir()) == []
    assert RunStaging.resume_newest(tmp_path) is None


def test_latest_names_newest_run(tmp_path: Path) -> None:
    """LATEST holds the relative path of the newest complete run, one line."""
    older = "20241118T000000Z-000001"
    RunStaging.create(tmp_path, older, {}).finalize({})
    RunStaging.create(tmp_path, RUN_ID, {}).finalize({})
    assert (tmp_path / "LATEST").read_text() == run_relpath(RUN_ID) + "\n"
    assert latest_run(tmp_path) == tmp_path / run_relpath(RUN_ID)


def test_publishing_removes_an_orphaned_latest_temporary(tmp_path: Path) -> None:
    """A LATEST temporary left by a killed writer is gone once the next run publishes."""
    orphan = tmp_path / ".LATEST.k1ll3d.tmp"
    orphan.write_bytes(b"run_date=")
    _staged(tmp_path, "a").finalize({})
    assert not orphan.exists()
    assert (tmp_path / "LATEST").read_text() == run_relpath(RUN_ID) + "\n"


def test_older_run_finishing_late_keeps_latest(tmp_path: Path) -> None:
    """A resumed run that started earlier does not take LATEST from a newer run."""
    older = RunStaging.create(tmp_path, "20241118T000000Z-000001", {})
    RunStaging.create(tmp_path, RUN_ID, {}).finalize({})
    older.finalize({})
    assert latest_run(tmp_path) == tmp_path / run_relpath(RUN_ID)


def test_resume_keeps_committed_and_drops_pending(tmp_path: Path) -> None:
    """Reopening keeps committed rows; rows only appended (never committed) are gone."""
    staging = _staged(tmp_path, "a", "b")
    staging.append("devices", [_device("lost")])
    resumed = _resumed(tmp_path)
    assert _devices(resumed) == ["a", "b"]
    assert sum(b.num_rows for b in resumed.committed_batches("findings")) == 2


def test_uncommitted_parts_are_deleted_on_resume(tmp_path: Path) -> None:
    """Part files no journal line names (a commit cut short) are deleted and never read."""
    _staged(tmp_path, "a")
    parts = tmp_path / ".staging" / RUN_ID / "parts"
    orphan = parts / "000002.devices.parquet"
    pq.write_table(pa.Table.from_pylist([{"device_name": "ghost"}]), orphan)
    resumed = _resumed(tmp_path)
    assert not orphan.exists()
    assert _devices(resumed) == ["a"]


def test_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    """A partial last journal line is cut off and its commit does not count."""
    _staged(tmp_path, "a", "b")
    journal = tmp_path / ".staging" / RUN_ID / "journal.jsonl"
    whole = journal.read_bytes()
    journal.write_bytes(whole[: len(whole) - 7])  # the second line lost its tail
    resumed = _resumed(tmp_path)
    assert _devices(resumed) == ["a"]
    assert journal.read_bytes() == whole[: whole.index(b"\n") + 1]


def test_commits_after_resume_append_cleanly(tmp_path: Path) -> None:
    """A resumed run keeps committing after a torn line and finalizes every commit once."""
    _staged(tmp_path, "a", "b")
    journal = tmp_path / ".staging" / RUN_ID / "journal.jsonl"
    journal.write_bytes(journal.read_bytes()[:-3])
    resumed = _resumed(tmp_path)
    resumed.append("devices", [_device("b2")])
    resumed.commit()
    again = _resumed(tmp_path)
    assert _devices(again) == ["a", "b2"]
    run_dir = again.finalize({})
    assert pq.read_table(run_dir / "devices.parquet")["device_name"].to_pylist() == ["a", "b2"]


def test_resume_picks_newest_unfinished(tmp_path: Path) -> None:
    """resume_newest returns the most recently started unfinished run."""
    RunStaging.create(tmp_path, "20241118T000000Z-000001", {})
    RunStaging.create(tmp_path, RUN_ID, {})
    resumed = _resumed(tmp_path)
    assert resumed.run_id == RUN_ID


def test_resume_skips_dir_without_meta(tmp_path: Path) -> None:
    """A staging dir whose create never finished is not a run to resume."""
    RunStaging.create(tmp_path, "20241118T000000Z-000001", {})
    (tmp_path / ".staging" / RUN_ID).mkdir()
    resumed = _resumed(tmp_path)
    assert resumed.run_id == "20241118T000000Z-000001"


def test_resume_completes_a_finalize_cut_after_rename(tmp_path: Path) -> None:
    """A run renamed into place whose tidy-up was cut short gets LATEST and is returned."""
    staging = _staged(tmp_path, "a")
    target = tmp_path / run_relpath(RUN_ID)
    target.parent.mkdir(parents=True)
    final = tmp_path / ".staging" / RUN_ID / "final"
    final.mkdir()
    (final / "manifest.json").write_bytes(b'{"coverage_ok": true}')
    final.rename(target)
    assert RunStaging.resume_newest(tmp_path) == target
    assert not staging.path.exists()
    assert latest_run(tmp_path) == target


def test_resume_completes_an_untrusted_finalize_without_latest(tmp_path: Path) -> None:
    """The same for a run below min_coverage: tidied up, but LATEST is not moved to it."""
    staging = _staged(tmp_path, "a")
    target = tmp_path / run_relpath(RUN_ID)
    target.parent.mkdir(parents=True)
    final = tmp_path / ".staging" / RUN_ID / "final"
    final.mkdir()
    (final / "manifest.json").write_bytes(b'{"coverage_ok": false}')
    final.rename(target)
    assert RunStaging.resume_newest(tmp_path) == target
    assert not staging.path.exists()
    assert latest_run(tmp_path) is None


def test_finalize_untrusted_publishes_without_moving_latest(tmp_path: Path) -> None:
    """An untrusted run is renamed into place; LATEST keeps naming the trusted one."""
    first = _staged(tmp_path, "a").finalize({})
    second = RunStaging.create(tmp_path, "29991231T000000Z-000002", {})
    untrusted = second.finalize({}, trusted=False)
    assert untrusted.is_dir()
    assert untrusted != first
    assert latest_run(tmp_path) == first


def test_half_built_final_dir_is_rebuilt(tmp_path: Path) -> None:
    """Leftovers of a finalize cut before the rename are discarded and rebuilt."""
    _staged(tmp_path, "a")
    final = tmp_path / ".staging" / RUN_ID / "final"
    final.mkdir()
    (final / "devices.parquet").write_bytes(b"torn")
    resumed = _resumed(tmp_path)
    run_dir = resumed.finalize({})
    assert pq.read_table(run_dir / "devices.parquet").num_rows == 1


def test_stale_staging_removed(tmp_path: Path) -> None:
    """Staged runs untouched for longer than max_age are removed, recent ones are kept."""
    stale = RunStaging.create(tmp_path, "20241101T000000Z-000001", {})
    fresh = RunStaging.create(tmp_path, RUN_ID, {})
    week_ago = START_MS / 1000 - 8 * 86400
    for path in [stale.path, *stale.path.iterdir()]:
        os.utime(path, (week_ago, week_ago))
    now_ms = int(fresh.path.stat().st_mtime * 1000)
    assert remove_stale_staging(tmp_path, now_ms) == [stale.path]
    assert fresh.path.exists()


def test_append_rejects_unknown_table(tmp_path: Path) -> None:
    """Only the seven run tables can be staged."""
    staging = RunStaging.create(tmp_path, RUN_ID, {})
    with pytest.raises(ValueError, match="remediation"):
        staging.append("remediation", [{}])


def test_create_twice_fails(tmp_path: Path) -> None:
    """A run id cannot be staged twice."""
    RunStaging.create(tmp_path, RUN_ID, {})
    with pytest.raises(FileExistsError):
        RunStaging.create(tmp_path, RUN_ID, {})


def test_finalize_streams_large_runs_into_row_groups(tmp_path: Path) -> None:
    """Many small commits are gathered into a few row groups without losing rows."""
    staging = RunStaging.create(tmp_path, RUN_ID, {})
    for i in range(50):
        staging.append("module_versions", [{"device_name": f"d{i}-{j}"} for j in range(10)])
        staging.commit()
    run_dir = staging.finalize({})
    meta = pq.ParquetFile(run_dir / "module_versions.parquet").metadata
    assert meta.num_rows == 500
    assert meta.num_row_groups == 1


def test_write_atomic_leaves_no_tmp(tmp_path: Path) -> None:
    """write_atomic replaces the file and leaves nothing else behind."""
    target = tmp_path / "LATEST"
    write_atomic(target, b"one\n")
    write_atomic(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert [p.name for p in tmp_path.iterdir()] == ["LATEST"]


def test_write_table_atomic_writes_parquet_atomically(tmp_path: Path) -> None:
    """write_table_atomic writes a full-schema Parquet file and no temp file."""
    target = tmp_path / "remediation.parquet"
    rows = [{"batch_id": "b1", "outcome": "cancelled"}]
    write_table_atomic(target, pa.Table.from_batches([rows_to_batch("remediation", rows)]))
    assert pq.read_table(target)["outcome"].to_pylist() == ["cancelled"]
    assert [p.name for p in tmp_path.iterdir()] == ["remediation.parquet"]


def test_save_meta_persists_changes(tmp_path: Path) -> None:
    """Changes to meta saved with save_meta are seen by the next resume."""
    staging = RunStaging.create(tmp_path, RUN_ID, {"sessions": 1})
    staging.meta["sessions"] = 2
    staging.save_meta()
    resumed = _resumed(tmp_path)
    assert resumed.meta == {"sessions": 2}
