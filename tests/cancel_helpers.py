"""Shared helpers of the `fleetaudit cancel` tests: findings rows, run directories, the
emulated platform they remediate, and `cancel(...)` to run the command in process.

- `finding(...)`: a findings row; `make_run_dir(path, rows, endpoint)`: a finished run;
- `platform()`/`stale_task(...)`/`make_fleet()`/`audit_findings()`: the platform and what
  the audit found on it (four stale tasks, one IN_PROGRESS, plus tasks never to touch);
- `emulator(fleet)`: the emulator on loopback with fast quotas, yields (URL, stats);
- `cancel(run, apply=...)`: `cancel_command` with test credentials; (exit code, output);
- `outcomes_of(run)`/`statuses(fleet)`: what remediation.parquet and the platform say;
- `platform_task(planned)`: the planned task as the client parses it from a re-read;
- `apply_command(run, url)`: the argv and environment of `fleetaudit cancel RUN --apply`
  in a child process, as cron would run it.
"""

from __future__ import annotations

import io
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fleetaudit.api.client import DEFAULT_QUOTAS
from fleetaudit.emulator.app import STATS_KEY, EmulatorStats
from fleetaudit.emulator.fleet import StaticFleet
from fleetaudit.models import Credentials, Task
from fleetaudit.remediation.apply import cancel_command
from fleetaudit.remediation.plan import PlannedTask
from fleetaudit.report.schema import SCHEMA_VERSION, rows_to_batch

from helpers import TEST_KEY_ID, TEST_SECRET, FleetBuilder, emulator_url


def finding(
    device: str = "dev-1",
    task_id: str = "t-1",
    *,
    finding_type: str = "stalled_task",
    product_key: str = "pk1",
    firmware_id: str | None = "fw1",
    job_id: str | None = "job1",
    status: str = "QUEUED",
    age: int | None = 90_000,
) -> dict[str, Any]:
    """A findings row as read from findings.parquet."""
    return {
        "finding_type": finding_type,
        "product_key": product_key,
        "device_name": device,
        "iot_id": f"iot-{device}",
        "module_name": "default",
        "task_id": task_id,
        "task_status": status,
        "firmware_id": firmware_id,
        "job_id": job_id,
        "age_seconds": age,
    }


def make_run_dir(
    path: Path,
    rows: list[dict[str, Any]],
    endpoint: str | None,
    *,
    iot_instance_id: str | None = None,
) -> Path:
    """A finished run's directory as the pipeline leaves it: findings and manifest."""
    path.mkdir(parents=True, exist_ok=True)
    full = [{"severity": "warning", "detail": "stale task", **row} for row in rows]
    pq.write_table(
        pa.Table.from_batches([rows_to_batch("findings", full)]), path / "findings.parquet"
    )
    config = {"endpoint": endpoint} if endpoint else {}
    if iot_instance_id is not None:
        config["iot_instance_id"] = iot_instance_id
    (path / "manifest.json").write_bytes(
        orjson.dumps({"schema_version": SCHEMA_VERSION, "config": config})
    )
    return path


CREDENTIALS = Credentials(TEST_KEY_ID, TEST_SECRET)
FAST = dict.fromkeys(DEFAULT_QUOTAS, 1000.0)
NOW_MS = 1_735_689_600_000
DAY_MS = 86_400_000


def platform() -> FleetBuilder:
    """Product pk1 with the two firmware packages the tasks upgrade to (the platform checks)."""
    fleet = FleetBuilder(now_ms=NOW_MS)
    for fw in ("fw1", "fw2"):
        fleet.firmware(
            fw, product_name="Product", dest="2.0", sign="0" * 32,
            url=f"https://ota.example.com/{fw}.bin?Signature=x",
            created_ms=NOW_MS - 30 * DAY_MS, modified_ms=NOW_MS - 30 * DAY_MS,
        )  # fmt: skip
    return fleet


def stale_task(
    fleet: FleetBuilder,
    task_id: str,
    device: str,
    status: str,
    *,
    fw: str = "fw1",
    job: str = "job1",
) -> None:
    """A task on the emulated platform, created nine days and last modified three days ago."""
    fleet.task(
        task_id, device, status, job=job, firmware=fw, dest="2.0",
        created_ms=NOW_MS - 9 * DAY_MS, modified_ms=NOW_MS - 3 * DAY_MS,
    )  # fmt: skip


def make_fleet() -> StaticFleet:
    """Four stale tasks (one IN_PROGRESS) and one fresh task the plan must never touch."""
    fleet = platform()
    for i in range(1, 6):
        fleet.device(f"dev-{i}", {"default": "1.0"})
    stale_task(fleet, "t-1", "dev-1", "QUEUED")
    stale_task(fleet, "t-2", "dev-2", "NOTIFIED")
    stale_task(fleet, "t-3", "dev-3", "IN_PROGRESS")
    stale_task(fleet, "t-4", "dev-4", "CONFIRM", fw="fw2", job="job2")
    stale_task(fleet, "t-fresh", "dev-1", "QUEUED", fw="fw2", job="job3")
    stale_task(fleet, "t-old", "dev-5", "SUCCEEDED")
    return fleet.build()


def audit_findings() -> list[dict[str, Any]]:
    """What the audit found in make_fleet(): the stale tasks, plus a finding that names none."""
    return [
        finding("dev-1", "t-1", status="QUEUED"),
        finding("dev-2", "t-2", status="NOTIFIED"),
        finding("dev-3", "t-3", status="IN_PROGRESS"),
        finding(
            "dev-4",
            "t-4",
            finding_type="orphan_task",
            status="CONFIRM",
            firmware_id="fw2",
            job_id="job2",
        ),
        {**finding("dev-5", "t-x", finding_type="version_drift"), "task_id": None},
    ]


@contextmanager
def emulator(fleet: StaticFleet, **kwargs: Any) -> Iterator[tuple[str, EmulatorStats]]:
    """The emulator over loopback with fast quotas: its URL and its counters."""
    with emulator_url(fleet, quotas=FAST, **kwargs) as (url, app):
        yield url, app[STATS_KEY]


async def cancel(run: Path, *, apply: bool, **kwargs: Any) -> tuple[int, str]:
    """Run `fleetaudit cancel` on a run directory; its exit code and what it printed."""
    out = io.StringIO()
    settings: dict[str, Any] = {
        "credentials": CREDENTIALS,
        "quotas": FAST,
        "now_ms": NOW_MS,
        "rng": random.Random(7),
    }
    code = await cancel_command(run, apply=apply, out=out, **{**settings, **kwargs})
    return code, out.getvalue()


def outcomes_of(run: Path) -> dict[str, str]:
    """task_id -> outcome of the newest batch in remediation.parquet."""
    rows = pq.read_table(run / "remediation.parquet").to_pylist()
    newest = max(row["batch_id"] for row in rows)
    return {row["task_id"]: row["outcome"] for row in rows if row["batch_id"] == newest}


def statuses(fleet: StaticFleet) -> dict[str, str]:
    """task_id -> status of every task on the emulated platform."""
    return {
        t.task_id: t.status
        for pk, name, _ in fleet.iter_device_list()
        for t in fleet.tasks(fleet.device(pk, name))  # type: ignore[arg-type]
    }


def apply_command(run: Path, url: str) -> tuple[list[str], dict[str, str]]:
    """`python -m fleetaudit cancel RUN --apply` against `url`: (argv, environment)."""
    env = {
        **os.environ,
        "FLEETAUDIT_ACCESS_KEY_ID": TEST_KEY_ID,
        "FLEETAUDIT_ACCESS_KEY_SECRET": TEST_SECRET,
    }
    argv = [sys.executable, "-m", "fleetaudit", "cancel", str(run), "--apply"]
    return [*argv, "--endpoint", url, "--qps", "1000"], env


def platform_task(task: PlannedTask) -> Task:
    """`task` as ListOTAUnfinishedTaskByDevice lists it (still unfinished, same status)."""
    return Task(
        task_id=task.task_id,
        job_id=task.job_id,
        firmware_id=task.firmware_id,
        product_key=task.product_key,
        product_name=None,
        device_name=task.device_name,
        iot_id=task.iot_id,
        module_name=task.module_name or "default",
        src_version=None,
        dest_version="2.0",
        task_status=task.task_status or "QUEUED",
        utc_create=0,
        utc_modified=0,
    )
