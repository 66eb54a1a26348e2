"""The sweep's three actions: the client reads them, the emulator agrees with the device view."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from fleetaudit.api.client import ClientSettings, open_client
from fleetaudit.api.protocol import TASK_WINDOW, job_tasks_params
from fleetaudit.api.responses import WindowExceeded
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.emulator.synthetic import SyntheticFleet
from fleetaudit.errors import CallFailed
from fleetaudit.models import Credentials, Job
from fleetaudit.terms import UNFINISHED_STATUSES, Action

from helpers import (
    TEST_KEY_ID,
    TEST_SECRET,
    UNLIMITED,
    FakeClock,
    FleetBuilder,
    RecordingSleep,
    call_emulator,
    emulator_url,
    static_fleet,
)

J1 = Job("J1", "F1", "pk1", "IN_PROGRESS", None, None, None, None)
ALL_UNFINISHED = {f"TaskStatusList.{i}": s for i, s in enumerate(UNFINISHED_STATUSES, start=1)}


async def body_of(url: str, action: str, params: dict[str, str]) -> dict[str, Any]:
    """One signed call's decoded body."""
    _, _, raw = await call_emulator(url, action, params)
    decoded: dict[str, Any] = orjson.loads(raw)
    return decoded


@pytest.mark.parametrize("casing", ["tuya", "alibaba"])
async def test_client_reads_firmware_jobs_and_tasks(casing: str) -> None:
    """Firmware, a firmware's jobs and a job's tasks parse the same in both casings."""
    clock = FakeClock()
    with emulator_url(static_fleet(), clock=clock, quotas=UNLIMITED, casing=casing) as (url, _):
        settings = ClientSettings(endpoint=url, quotas=dict.fromkeys(Action, 1000.0))
        credentials = Credentials(TEST_KEY_ID, TEST_SECRET)
        async with open_client(
            settings, credentials, sleep=RecordingSleep(), rng=random.Random(1), clock=clock
        ) as client:
            (firmware,) = await client.list_firmware("pk1")
            jobs = await client.list_jobs_by_firmware(firmware)
            queued = await client.list_job_tasks(J1, "QUEUED", module_name=firmware.module_name)
            progressing = await client.list_job_tasks(J1, "IN_PROGRESS", module_name="default")
    assert (firmware.firmware_id, firmware.module_name, firmware.firmware_url) == (
        "F1", "default", None
    )  # fmt: skip
    assert {(j.job_id, j.job_status) for j in jobs} == {("J1", "IN_PROGRESS"), ("J2", "COMPLETED")}
    assert [(t.task_id, t.device_name, t.task_status) for t in queued] == [("T1", "d1", "QUEUED")]
    assert (progressing[0].task_id, progressing[0].progress) == ("T2", 0)
    assert progressing[0].job_timeout_minutes is None


def client(url: str, clock: FakeClock) -> Any:
    """A client of `url` with pacing out of the way and a sleep that waits for nothing."""
    settings = ClientSettings(endpoint=url, quotas=dict.fromkeys(Action, 1000.0))
    credentials = Credentials(TEST_KEY_ID, TEST_SECRET)
    return open_client(
        settings, credentials, sleep=RecordingSleep(), rng=random.Random(1), clock=clock
    )


async def test_tasks_about_another_firmware_are_not_believed() -> None:
    """A job listing whose tasks name another firmware than the job's is MalformedResponse."""
    clock = FakeClock()
    with emulator_url(static_fleet(), clock=clock, quotas=UNLIMITED) as (url, _):
        async with client(url, clock) as api:
            with pytest.raises(CallFailed) as failed:
                await api.list_job_tasks(
                    Job("J1", "F9", "pk1", None, None, None, None, None), "QUEUED"
                )
    assert failed.value.failure.error_code == "MalformedResponse"
    assert failed.value.failure.job_id == "J1"


async def test_a_listing_past_the_window_raises_after_one_page() -> None:
    """More tasks than the window shows: WindowExceeded after the first page, no more calls."""
    clock = FakeClock()
    fleet = FleetBuilder().firmware().job()
    for index in range(TASK_WINDOW + 1):
        fleet.task(f"T{index:06d}", f"d{index:06d}")
    with emulator_url(fleet.build(), clock=clock, quotas=UNLIMITED) as (url, app):
        async with client(url, clock) as api:
            with pytest.raises(WindowExceeded) as exceeded:
                await api.list_job_tasks(J1, "QUEUED")
            assert api.stats.action(Action.LIST_TASKS_BY_JOB).failures == 0
        served = app[STATS_KEY].served["ListOTATaskByJob"]
    assert (exceeded.value.total, served) == (TASK_WINDOW + 1, 1)


async def test_device_names_go_fifty_a_call() -> None:
    """Asking a job about 120 devices takes three listings of at most 50 names each."""
    clock = FakeClock()
    names = ["d1", *(f"x{i:03d}" for i in range(119))]
    with emulator_url(static_fleet(), clock=clock, quotas=UNLIMITED) as (url, app):
        async with client(url, clock) as api:
            tasks = await api.list_job_tasks_of_devices(J1, None, names, "default")
        served = app[STATS_KEY].served["ListOTATaskByJob"]
    assert served == 3
    assert sorted(t.task_id for t in tasks) == ["T1", "T2", "T3"]


def test_task_parameters_keep_to_the_window_and_fifty_names() -> None:
    """A page past the window or more than 50 device names is refused before sending."""
    assert job_tasks_params("J", "QUEUED", 1000, 100)["CurrentPage"] == "1000"
    with pytest.raises(ValueError, match="100000"):
        job_tasks_params("J", "QUEUED", 1001, 100)
    names = [f"d{i}" for i in range(51)]
    with pytest.raises(ValueError, match="50"):
        job_tasks_params("J", None, 1, 100, names)
    params = job_tasks_params("J", None, 1, 100, names[:2])
    assert (params["DeviceNames.1"], params["DeviceNames.2"], "TaskStatus" in params) == (
        "d0", "d1", False
    )  # fmt: skip


async def test_emulator_refuses_pages_past_the_window_and_big_pages() -> None:
    """A page beyond the window, a page over 100 and 51 names are business errors."""
    with emulator_url(static_fleet(), clock=FakeClock(), quotas=UNLIMITED) as (url, _):
        deep = await body_of(url, "ListOTATaskByJob", {"JobId": "J1", "CurrentPage": "1001",
                                                       "PageSize": "100"})  # fmt: skip
        big = await body_of(url, "ListOTATaskByJob", {"JobId": "J1", "CurrentPage": "1",
                                                      "PageSize": "101"})  # fmt: skip
        names = {f"DeviceNames.{i}": f"d{i}" for i in range(1, 52)}
        many = await body_of(url, "ListOTATaskByJob", {"JobId": "J1", **names})
        unknown = await body_of(url, "ListOTATaskByJob", {"JobId": "J404"})
        firmware = await body_of(url, "ListOTAFirmware", {"CurrentPage": "1", "PageSize": "101"})
    assert deep["code"] == big["code"] == firmware["code"] == "iot.common.InvalidPageParams"
    assert many["code"] == "iot.system.IllegalRequest"
    assert unknown["code"] == "iot.ota.NotExistedJob"


async def test_a_cancel_shows_in_both_listings() -> None:
    """After a cancel the job listing and the per-device listing agree the task is CANCELED."""
    with emulator_url(static_fleet(), clock=FakeClock(), quotas=UNLIMITED) as (url, _):
        before = await body_of(url, "ListOTATaskByJob", {"JobId": "J1", "TaskStatus": "QUEUED"})
        await body_of(url, "CancelOTATaskByDevice", {"ProductKey": "pk1", "FirmwareId": "F1",
                                                     "DeviceName.1": "d1"})  # fmt: skip
        queued = await body_of(url, "ListOTATaskByJob", {"JobId": "J1", "TaskStatus": "QUEUED"})
        cancelled = await body_of(
            url, "ListOTATaskByJob", {"JobId": "J1", "TaskStatus": "CANCELED"}
        )
        per_device = await body_of(
            url, "ListOTAUnfinishedTaskByDevice", {"IotId": "iot-d1", **ALL_UNFINISHED}
        )
    assert [t["taskId"] for t in before["data"]["simpleOTATaskInfo"]] == ["T1"]
    assert queued["data"]["simpleOTATaskInfo"] == []
    assert [t["taskId"] for t in cancelled["data"]["simpleOTATaskInfo"]] == ["T1"]
    assert [t["taskId"] for t in per_device["data"]["simpleOTATaskInfo"]] == ["T2"]


async def test_synthetic_job_listings_hold_exactly_the_devices_tasks() -> None:
    """Every unfinished task of a synthetic fleet is in its job's listing, and nothing else."""
    fleet = SyntheticFleet(600, seed=3)
    by_device = {
        task.task_id: task.status
        for product_key, name, _ in fleet.iter_device_list()
        if (device := fleet.device(product_key, name)) is not None
        for task in fleet.tasks(device)
        if task.status in UNFINISHED_STATUSES
    }
    by_job: dict[str, str] = {}
    with emulator_url(fleet, clock=FakeClock(), quotas=UNLIMITED) as (url, app):
        for product_key in fleet.product_keys:
            firmware = await body_of(url, "ListOTAFirmware", {"ProductKey": product_key,
                                                              "CurrentPage": "1",
                                                              "PageSize": "100"})  # fmt: skip
            for package in firmware["firmwareInfo"]["simpleFirmwareInfo"]:
                jobs = await body_of(url, "ListOTAJobByFirmware", {
                    "FirmwareId": package["firmwareId"], "CurrentPage": "1", "PageSize": "200"
                })  # fmt: skip
                for job in jobs["data"]["simpleOTAJobInfo"]:
                    for status in UNFINISHED_STATUSES:
                        page = await body_of(url, "ListOTATaskByJob", {
                            "JobId": job["jobId"], "TaskStatus": status, "PageSize": "100"
                        })  # fmt: skip
                        assert page["total"] <= 100
                        for task in page["data"]["simpleOTATaskInfo"]:
                            by_job[task["taskId"]] = task["taskStatus"]
        assert app[STATS_KEY].served["ListOTATaskByJob"] > 0
    assert by_job == by_device
    assert len(by_device) > 50


async def test_failing_listings_fail_only_their_id() -> None:
    """A failing job id fails its task listing and nothing else."""
    plan = FaultPlan(failing_listings={"J1": "iot.ota.Broken"})
    with emulator_url(static_fleet(), clock=FakeClock(), quotas=UNLIMITED, faults=plan) as (
        url,
        _,
    ):
        failed = await body_of(url, "ListOTATaskByJob", {"JobId": "J1"})
        other = await body_of(url, "ListOTATaskByJob", {"JobId": "J2"})
        per_device = await body_of(
            url, "ListOTAUnfinishedTaskByDevice", {"IotId": "iot-d1", **ALL_UNFINISHED}
        )
    assert failed["code"] == "iot.ota.Broken"
    assert other["success"] is True
    assert per_device["success"] is True


async def test_each_sweep_action_has_its_own_quota() -> None:
    """A throttled task listing does not slow the firmware listing (separate buckets)."""
    clock = FakeClock()
    quotas = {**UNLIMITED, "ListOTATaskByJob": 1.0}
    with emulator_url(static_fleet(), clock=clock, quotas=quotas) as (url, app):
        for _ in range(3):
            await body_of(url, "ListOTATaskByJob", {"JobId": "J1"})
            await body_of(url, "ListOTAFirmware", {"CurrentPage": "1", "PageSize": "10"})
        stats = app[STATS_KEY]
    assert stats.throttled["ListOTATaskByJob"] == 2
    assert stats.throttled["ListOTAFirmware"] == 0


def test_synthetic_job_tasks_are_the_devices_tasks_of_that_job() -> None:
    """Every synthetic job holds exactly the tasks (any status) its devices say are in it."""
    fleet = SyntheticFleet(5000, seed=5)
    by_device: dict[str, set[str]] = {}
    for product_key, name, _ in fleet.iter_device_list():
        device = fleet.device(product_key, name)
        for task in fleet.tasks(device) if device is not None else []:
            by_device.setdefault(task.job_id, set()).add(task.task_id)
    by_job = {
        job.job_id: {task.task_id for task in fleet.job_tasks(job)}
        for package in fleet.product_firmware(None)
        for job in fleet.jobs(package.firmware_id)
    }
    assert {job_id: ids for job_id, ids in by_job.items() if ids} == by_device
    assert sum(map(len, by_device.values())) > 1000
