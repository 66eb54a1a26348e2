"""The reader of published runs (report/runs.py): which runs exist, which one is the previous
run of a series, tables an older run lacks, device state, and bad paths (exit 2)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetaudit import cli
from fleetaudit.errors import UsageError
from fleetaudit.report.runs import device_state, open_run, previous_run, published_runs
from fleetaudit.report.schema import CHANGES, rows_to_batch
from fleetaudit.report.staging import run_relpath


def _publish(out: Path, run_id: str, **manifest: Any) -> Path:
    run_dir = out / run_relpath(run_id)
    run_dir.mkdir(parents=True)
    document = {"run_id": run_id, "status": "complete", "series": "nightly", **manifest}
    (run_dir / "manifest.json").write_bytes(orjson.dumps(document))
    return run_dir


def _write(run_dir: Path, table: str, rows: list[dict[str, Any]]) -> None:
    pq.write_table(
        pa.Table.from_batches([rows_to_batch(table, rows)]), run_dir / f"{table}.parquet"
    )


def test_previous_run_is_the_newest_trusted_earlier_run_of_the_series(tmp_path: Path) -> None:
    """Another series, an untrusted run and a later run are all passed over."""
    _publish(tmp_path, "20260101T020000Z-aaaaaa")
    wanted = _publish(tmp_path, "20260102T020000Z-bbbbbb")
    _publish(tmp_path, "20260103T020000Z-cccccc", series="canary")
    _publish(tmp_path, "20260104T020000Z-dddddd", coverage_ok=False)
    _publish(tmp_path, "20260106T020000Z-ffffff")
    found = previous_run(tmp_path, "nightly", "20260105T020000Z-eeeeee")
    assert found is not None
    assert found.path == wanted


def test_a_broken_manifest_hides_only_its_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run whose manifest is not JSON is skipped with a warning; the others are listed."""
    _publish(tmp_path, "20260101T020000Z-aaaaaa")
    broken = _publish(tmp_path, "20260102T020000Z-bbbbbb")
    (broken / "manifest.json").write_text("{", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        runs = published_runs(tmp_path)
    assert [run.run_id for run in runs] == ["20260101T020000Z-aaaaaa"]
    assert str(broken) in caplog.text


def test_a_table_an_older_run_lacks_reads_empty(tmp_path: Path) -> None:
    """A schema-2 run has no changes.parquet: it reads as an empty table with the schema."""
    run = open_run(_publish(tmp_path, "20260101T020000Z-aaaaaa"))
    table = run.table("changes")
    assert (table.num_rows, table.schema.names) == (0, CHANGES.names)
    assert not run.has_table("changes")


def test_device_state_is_the_ok_devices_module_versions(tmp_path: Path) -> None:
    """The state a later run can carry forward: versions of the devices answered ok."""
    run_dir = _publish(tmp_path, "20260101T020000Z-aaaaaa")
    _write(
        run_dir,
        "devices",
        [
            {"product_key": "pk", "device_name": "a", "audit_status": "ok"},
            {"product_key": "pk", "device_name": "b", "audit_status": "error"},
        ],
    )
    _write(
        run_dir,
        "module_versions",
        [
            {"product_key": "pk", "device_name": d, "module_name": "m", "module_version": "1"}
            for d in ("a", "b")
        ],
    )
    state = pa.Table.from_batches(list(device_state(open_run(run_dir))))
    assert state.column("device_name").to_pylist() == ["a"]


def test_not_a_run_is_a_usage_error(tmp_path: Path) -> None:
    """open_run names the directory that holds no manifest (exit 2 from the commands)."""
    with pytest.raises(UsageError, match="not a finished run directory"):
        open_run(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["diff", "{tmp}/nope", "{tmp}/nope"],
        ["history", "{tmp}/nope"],
        ["report", "{tmp}/nope"],
    ],
)
def test_commands_exit_2_on_a_path_that_is_no_run(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """diff, history and report name the path they cannot use and exit 2."""
    code = cli.main([arg.format(tmp=tmp_path) for arg in argv])
    assert code == 2
    assert f"{tmp_path}/nope" in capsys.readouterr().err


def test_a_run_from_before_series_belongs_to_its_device_lists_series(tmp_path: Path) -> None:
    """A run written before `series` existed is in the default series (its device list's
    absolute path): the first run after an upgrade compares with it."""
    old = tmp_path / "run_date=2026-01-01" / "run_id=20260101T020000Z-aaaaaa"
    old.mkdir(parents=True)
    devices = tmp_path / "fleet.csv"
    document = {"run_id": "20260101T020000Z-aaaaaa", "status": "complete",
                "config": {"devices": str(devices)}}  # fmt: skip
    (old / "manifest.json").write_bytes(orjson.dumps(document))
    found = previous_run(tmp_path, str(devices.resolve()), "20260102T020000Z-bbbbbb")
    assert found is not None
    assert found.run_id == "20260101T020000Z-aaaaaa"
