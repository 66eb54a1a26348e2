"""What a resumed run knows from the rows an earlier session committed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fleetaudit.api.client import ACTIONS, ClientSettings, open_client
from fleetaudit.collect import Fetched, Lookups
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.fleet import (
    FleetDevice,
    FleetFirmware,
    FleetJob,
    FleetTask,
    StaticFleet,
)
from fleetaudit.models import CallFailure, Credentials, Device, Firmware, Task
from fleetaudit.report.resume import committed_lookups
from fleetaudit.report.staging import RunStaging
from fleetaudit.terms import Action, Table

from helpers import FIXED_NOW, TEST_KEY_ID, TEST_SECRET, emulator_url

RUN_ID = "20241119T094743Z-00abcd"
NOW_MS = int(FIXED_NOW * 1000)


def _failure(action: Action, firmware_id: str, job_id: str | None) -> CallFailure:
    return CallFailure(action, "pk1", "d1", firmware_id, job_id, "InternalError", "m", 500, 8, None)


def test_resumed_lookups_know_earlier_answers_and_failures(tmp_path: Path) -> None:
    """A resumed run knows the firmware fetched and the firmware and jobs whose lookup failed."""
    staging = RunStaging.create(tmp_path, RUN_ID, {})
    firmware = Firmware(
        "F1", "fw", "pk1", None, "default", None, "2.0", 1, 0, None, None, None, None, None,
        1_731_974_400_000, None,
    )  # fmt: skip
    staging.append("firmware", [firmware])
    staging.append(
        "errors",
        [_failure(Action.QUERY_FIRMWARE, "F9", None), _failure(Action.LIST_JOBS, "F1", "J7")],
    )
    staging.commit()
    known = committed_lookups(RunStaging.open(tmp_path, RUN_ID))
    assert known.firmware == [firmware]
    assert known.failed_firmware == {"F9"}
    assert known.failed_jobs == {("F1", "J7")}


class JobsWithoutFirmwareId(StaticFleet):
    """A platform whose job listings leave each job's FirmwareId empty."""

    def _jobs(self, firmware_id: str) -> list[FleetJob]:
        return [replace(job, firmware_id="") for job in super()._jobs(firmware_id)]


def _one_task_fleet() -> JobsWithoutFirmwareId:
    device = FleetDevice("pk1", "d1", "iot-d1", {"default": "1.0.0"})
    task = FleetTask(
        "T1", "J1", "F1", "pk1", "d1", "default", "1.0.0", "1.1.0", "QUEUED", NOW_MS, NOW_MS
    )
    job = FleetJob(
        "J1", "F1", "pk1", "IN_PROGRESS", "UPGRADE_FIRMWARE", "SPECIFIC", "STATIC", NOW_MS, NOW_MS
    )
    firmware = FleetFirmware(
        "F1", "plug-1.1.0", "pk1", "Plug", "default", "", "1.1.0", 1, 0, "MD5", "abc", 1024, 100,
        "https://ota.example.com/fw/F1.bin", NOW_MS, NOW_MS,
    )  # fmt: skip
    return JobsWithoutFirmwareId([device], [task], [firmware], [job])


async def test_a_job_listed_without_its_firmware_id_is_written_once_across_sessions(
    tmp_path: Path,
) -> None:
    """A job listed without FirmwareId is written under its firmware, and not again on resume."""
    device = Device("pk1", "d1", "iot-d1")
    task = Task(
        "T1", "J1", "F1", "pk1", None, "d1", "iot-d1", "default", "1.0.0", "1.1.0", "QUEUED",
        NOW_MS, NOW_MS,
    )  # fmt: skip
    credentials = Credentials(TEST_KEY_ID, TEST_SECRET)
    quotas = dict.fromkeys(ACTIONS, 0.0)
    with emulator_url(_one_task_fleet(), quotas=quotas) as (url, app):
        settings = ClientSettings(endpoint=url, quotas=dict.fromkeys(ACTIONS, 1000.0))
        staging = RunStaging.create(tmp_path, RUN_ID, {})
        async with open_client(settings, credentials) as client:
            first = Fetched()
            job = await Lookups(client).job(task, device, first)
            staging.append(Table.JOBS, first.jobs)
            staging.commit()
            # The next session starts from what the first committed.
            known = committed_lookups(RunStaging.open(tmp_path, RUN_ID))
            again = Fetched()
            resumed = Lookups(client, jobs=known.jobs)
            assert await resumed.job(task, device, again) == job
        listings = app[STATS_KEY].served[Action.LIST_JOBS]
    assert first.failures == []
    assert job is not None
    assert job.firmware_id == "F1"
    assert (first.jobs, again.jobs, listings) == ([job], [], 1)
