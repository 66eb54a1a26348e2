"""Several `fleetaudit cancel --apply` on one run directory at once: calls and outcome rows.

    .venv/bin/python benchmarks/concurrent_apply.py --applies 3 --tasks 5

Serves the emulator (with some latency, so the applies overlap) over a fleet of `--tasks`
cancellable stale tasks in two cancel calls, writes a run directory naming them, starts
`--applies` CLI processes on it together and prints their exit codes, the cancel calls the
emulator answered and the rows remediation.parquet holds afterwards (issue 11: before the
apply lock, 3 applies made 12 calls and recorded 15 outcomes for 5 tasks, some batches lost).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fleetaudit.emulator.app import STATS_KEY, create_app
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.emulator.fleet import FleetDevice, FleetFirmware, FleetTask, StaticFleet
from fleetaudit.emulator.server import serve_in_thread
from fleetaudit.report.schema import rows_to_batch

KEY_ID, SECRET = "bench-key", "bench-secret-not-a-real-one"
NOW_MS = 1_735_689_600_000
DAY_MS = 86_400_000


def fleet(tasks: int) -> StaticFleet:
    """`tasks` devices with one QUEUED task each, split over two firmware packages."""
    devices = [FleetDevice("pk1", f"dev-{i}", f"iot-{i}", {"default": "1.0"}) for i in range(tasks)]
    made = NOW_MS - 30 * DAY_MS
    url = "https://ota.example.com/fw.bin"
    firmware = [
        FleetFirmware(
            fw,
            fw,
            "pk1",
            "P",
            "default",
            "1.0",
            "2.0",
            1,
            0,
            "MD5",
            "0" * 32,
            1,
            100,
            url,
            made,
            made,
        )
        for fw in ("fw1", "fw2")
    ]
    created, modified = NOW_MS - 9 * DAY_MS, NOW_MS - 3 * DAY_MS
    rows = [
        FleetTask(
            f"t-{i}",
            f"job-{i % 2}",
            f"fw{i % 2 + 1}",
            "pk1",
            f"dev-{i}",
            "default",
            "1.0",
            "2.0",
            "QUEUED",
            created,
            modified,
        )
        for i in range(tasks)
    ]
    return StaticFleet(devices, rows, firmware)


def run_dir(path: Path, tasks: int, endpoint: str) -> Path:
    """A finished run whose findings name every task as stalled."""
    common = {"finding_type": "stalled_task", "severity": "warning", "detail": "stale"}
    rows = [
        {
            **common,
            **{"product_key": "pk1", "device_name": f"dev-{i}", "iot_id": f"iot-{i}"},
            **{"module_name": "default", "task_id": f"t-{i}", "task_status": "QUEUED"},
            **{"firmware_id": f"fw{i % 2 + 1}", "job_id": f"job-{i % 2}", "age_seconds": 7_776},
        }
        for i in range(tasks)
    ]
    path.mkdir(parents=True)
    table = pa.Table.from_batches([rows_to_batch("findings", rows)])
    pq.write_table(table, path / "findings.parquet")
    manifest = {"schema_version": 1, "config": {"endpoint": endpoint}}
    (path / "manifest.json").write_bytes(orjson.dumps(manifest))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per emulator answer")
    args = parser.parse_args()
    app = create_app(
        fleet(args.tasks),
        credentials={KEY_ID: SECRET},
        faults=FaultPlan(latency=args.latency),
        quotas={},
    )
    env = dict(os.environ, FLEETAUDIT_ACCESS_KEY_ID=KEY_ID, FLEETAUDIT_ACCESS_KEY_SECRET=SECRET)
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(app) as url:
        run = run_dir(Path(tmp) / "run", args.tasks, url)
        command = [sys.executable, "-m", "fleetaudit", "cancel", str(run), "--apply"]
        children = [
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(args.applies)
        ]
        codes = [child.wait() for child in children]
        for child in children:
            assert child.stderr is not None
            child.stderr.close()
        stats = app[STATS_KEY]
        path = run / "remediation.parquet"
        rows = pq.read_table(path).to_pylist() if path.exists() else []
    batches = {row["batch_id"] for row in rows}
    cancelled = sum(row["outcome"] == "cancelled" for row in rows)
    print(f"{args.applies} concurrent applies over {args.tasks} tasks: exit codes {sorted(codes)}")
    print(f"  cancel calls answered: {stats.cancel_calls} (tasks moved: {stats.cancelled_tasks})")
    print(
        f"  remediation.parquet: {len(rows)} outcome rows in {len(batches)} batch(es), "
        f"{cancelled} 'cancelled'"
    )


if __name__ == "__main__":
    main()
