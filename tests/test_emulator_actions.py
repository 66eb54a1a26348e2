"""The five OTA actions over loopback: shapes, paging, filters, business errors, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from fleetaudit.emulator.app import FLEET_KEY, STATS_KEY

from helpers import FIXED_NOW, FakeClock, call_emulator, emulator_url, static_fleet

ALL_UNFINISHED = {
    f"TaskStatusList.{i}": s
    for i, s in enumerate(("CONFIRM", "QUEUED", "NOTIFIED", "IN_PROGRESS"), start=1)
}


@pytest.fixture
def emulator() -> Iterator[tuple[str, web.Application]]:
    """An emulator over the static fleet with a fixed clock and no quotas."""
    unlimited = dict.fromkeys(
        [
            "ListOTAModuleVersionsByDevice",
            "ListOTAUnfinishedTaskByDevice",
            "QueryOTAFirmware",
            "ListOTAJobByDevice",
            "CancelOTATaskByDevice",
        ],
        0.0,
    )
    with emulator_url(static_fleet(), clock=FakeClock(), quotas=unlimited) as served:
        yield served


async def ok(url: str, action: str, params: dict[str, str]) -> dict[str, Any]:
    """Call an action that must succeed; its decoded body."""
    status, _, raw = await call_emulator(url, action, params)
    body: dict[str, Any] = orjson.loads(raw)
    assert (status, body["success"], body["code"]) == (200, True, ""), body
    return body


async def failing(url: str, action: str, params: dict[str, str]) -> str:
    """Call an action that must fail with a business error; its code."""
    status, _, raw = await call_emulator(url, action, params)
    body = orjson.loads(raw)
    assert (status, body["success"]) == (200, False), body
    assert body["errorMessage"]
    return str(body["code"])


async def tasks_of(url: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """The unfinished tasks the emulator lists for these parameters."""
    body = await ok(url, "ListOTAUnfinishedTaskByDevice", params)
    return list(body["data"]["simpleOTATaskInfo"])


@pytest.mark.parametrize("size", [200, 100])
async def test_module_paging(emulator: tuple[str, web.Application], size: int) -> None:
    """A 250-module device pages into ceil(250/size) pages that add up to all modules."""
    url, _ = emulator
    seen: list[str] = []
    for page in (1, 2, 3):
        body = await ok(
            url,
            "ListOTAModuleVersionsByDevice",
            {"IotId": "iot-big", "CurrentPage": str(page), "PageSize": str(size)},
        )
        assert (body["total"], body["pageCount"], body["pageSize"]) == (250, -(-250 // size), size)
        seen += [m["moduleName"] for m in body["data"]["simpleOTAModuleInfo"]]
    assert seen == [f"m{i:03d}" for i in range(250)]


async def test_module_item_shape(emulator: tuple[str, web.Application]) -> None:
    """Module items carry deviceName, iotId, moduleName, moduleVersion, productKey."""
    body = await ok(
        emulator[0],
        "ListOTAModuleVersionsByDevice",
        {"ProductKey": "pk1", "DeviceName": "d2", "CurrentPage": "1", "PageSize": "10"},
    )
    assert body["data"]["simpleOTAModuleInfo"] == [
        {
            "deviceName": "d2",
            "iotId": "iot-d2",
            "moduleName": "default",
            "moduleVersion": "1.1.0",
            "productKey": "pk1",
        }
    ]
    assert body["currentPage"] == 1


async def test_page_size_over_limit(emulator: tuple[str, web.Application]) -> None:
    """PageSize 201 for module versions is iot.common.InvalidPageParams."""
    code = await failing(
        emulator[0],
        "ListOTAModuleVersionsByDevice",
        {"IotId": "iot-d1", "CurrentPage": "1", "PageSize": "201"},
    )
    assert code == "iot.common.InvalidPageParams"


async def test_iot_id_wins_over_names(emulator: tuple[str, web.Application]) -> None:
    """With both IotId and ProductKey+DeviceName, the IotId's device is answered."""
    tasks = await tasks_of(
        emulator[0], {"IotId": "iot-d2", "ProductKey": "pk1", "DeviceName": "d1", **ALL_UNFINISHED}
    )
    assert [t["taskId"] for t in tasks] == ["T4"]


async def test_unfinished_tasks_never_include_terminal(
    emulator: tuple[str, web.Application],
) -> None:
    """All four unfinished statuses list the unfinished tasks, not the SUCCEEDED one."""
    tasks = await tasks_of(emulator[0], {"ProductKey": "pk1", "DeviceName": "d1", **ALL_UNFINISHED})
    assert sorted(t["taskId"] for t in tasks) == ["T1", "T2"]
    assert tasks[0]["utcCreate"].endswith(".000Z")


async def test_task_status_list_filters(emulator: tuple[str, web.Application]) -> None:
    """TaskStatusList.1=IN_PROGRESS lists only in-progress tasks."""
    tasks = await tasks_of(emulator[0], {"IotId": "iot-d1", "TaskStatusList.1": "IN_PROGRESS"})
    assert [t["taskStatus"] for t in tasks] == ["IN_PROGRESS"]


async def test_module_name_filters(emulator: tuple[str, web.Application]) -> None:
    """ModuleName=ble lists only the ble module's tasks."""
    tasks = await tasks_of(emulator[0], {"IotId": "iot-d1", "ModuleName": "ble", **ALL_UNFINISHED})
    assert [t["taskId"] for t in tasks] == ["T2"]


async def test_missing_task_status_is_refused(emulator: tuple[str, web.Application]) -> None:
    """Neither TaskStatus nor TaskStatusList.N is a 400 Missing error."""
    status, _, raw = await call_emulator(
        emulator[0], "ListOTAUnfinishedTaskByDevice", {"IotId": "iot-d1"}
    )
    assert (status, orjson.loads(raw)["Code"]) == (400, "MissingTaskStatus")


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        (
            "ListOTAUnfinishedTaskByDevice",
            {"IotId": "nope", "TaskStatus": "QUEUED"},
            "iot.device.NotExistedDevice",
        ),
        (
            "ListOTAUnfinishedTaskByDevice",
            {"ProductKey": "pkX", "DeviceName": "d1", "TaskStatus": "QUEUED"},
            "iot.prod.NotExistedProduct",
        ),
        ("QueryOTAFirmware", {"FirmwareId": "F404"}, "iot.ota.NotExistedFirmware"),
        (
            "ListOTAJobByDevice",
            {
                "ProductKey": "pk1",
                "DeviceName": "ghost",
                "FirmwareId": "F1",
                "CurrentPage": "1",
                "PageSize": "10",
            },
            "iot.device.NotExistedDevice",
        ),
        (
            "ListOTAJobByDevice",
            {
                "ProductKey": "pk1",
                "DeviceName": "d1",
                "FirmwareId": "F1",
                "CurrentPage": "0",
                "PageSize": "10",
            },
            "iot.common.InvalidPageParams",
        ),
    ],
)
async def test_business_errors(
    emulator: tuple[str, web.Application], action: str, params: dict[str, str], code: str
) -> None:
    """Unknown devices, products, firmware and bad pages are HTTP 200 business errors."""
    assert await failing(emulator[0], action, params) == code


async def test_missing_action_parameter(emulator: tuple[str, web.Application]) -> None:
    """QueryOTAFirmware without FirmwareId is 400 MissingFirmwareId."""
    status, _, raw = await call_emulator(emulator[0], "QueryOTAFirmware", {})
    assert (status, orjson.loads(raw)["Code"]) == (400, "MissingFirmwareId")


async def test_firmware_url_keeps_its_query_string(emulator: tuple[str, web.Application]) -> None:
    """QueryOTAFirmware returns the presigned URL with its query string, as the platform does."""
    body = await ok(emulator[0], "QueryOTAFirmware", {"FirmwareId": "F1"})
    assert "?Expires=" in body["firmwareInfo"]["firmwareUrl"]
    assert body["firmwareInfo"]["status"] == 1


async def test_jobs_by_device(emulator: tuple[str, web.Application]) -> None:
    """ListOTAJobByDevice lists the firmware's jobs the device has tasks in."""
    body = await ok(
        emulator[0],
        "ListOTAJobByDevice",
        {
            "ProductKey": "pk1",
            "DeviceName": "d2",
            "FirmwareId": "F1",
            "CurrentPage": "1",
            "PageSize": "100",
        },
    )
    jobs = body["data"]["simpleOTAJobInfo"]
    assert [(j["jobId"], j["jobStatus"]) for j in jobs] == [("J2", "COMPLETED")]
    assert body["total"] == 1


def cancel_params(*names: str, job_id: str | None = None) -> dict[str, str]:
    """CancelOTATaskByDevice parameters for firmware F1 of pk1."""
    params = {"ProductKey": "pk1", "FirmwareId": "F1"}
    params.update({f"DeviceName.{i}": n for i, n in enumerate(names, start=1)})
    if job_id is not None:
        params["JobId"] = job_id
    return params


async def test_cancel_honours_the_cancellable_set(emulator: tuple[str, web.Application]) -> None:
    """Cancel moves QUEUED to CANCELED at the clock's time and leaves IN_PROGRESS alone."""
    url, app = emulator
    await ok(url, "CancelOTATaskByDevice", cancel_params("d1"))
    tasks = {t.task_id: t for t in app[FLEET_KEY].tasks(app[FLEET_KEY].device("pk1", "d1"))}  # type: ignore[arg-type]
    assert (tasks["T1"].status, tasks["T1"].utc_modified_ms) == ("CANCELED", int(FIXED_NOW * 1000))
    assert tasks["T2"].status == "IN_PROGRESS"
    assert (app[STATS_KEY].cancel_calls, app[STATS_KEY].cancelled_tasks) == (1, 1)


async def test_cancel_in_progress_when_configured() -> None:
    """With IN_PROGRESS cancellable, cancel reaches the in-progress task too."""
    cancellable = frozenset({"CONFIRM", "QUEUED", "NOTIFIED", "IN_PROGRESS"})
    with emulator_url(static_fleet(), clock=FakeClock(), cancellable=cancellable) as (url, _):
        await ok(url, "CancelOTATaskByDevice", cancel_params("d1"))
        tasks = await tasks_of(url, {"IotId": "iot-d1", **ALL_UNFINISHED})
    assert tasks == []


async def test_cancel_scoped_by_job(emulator: tuple[str, web.Application]) -> None:
    """With JobId=J1, d2's task in job J2 is left alone."""
    url, _ = emulator
    await ok(url, "CancelOTATaskByDevice", cancel_params("d2", job_id="J1"))
    assert [t["taskId"] for t in await tasks_of(url, {"IotId": "iot-d2", **ALL_UNFINISHED})] == [
        "T4"
    ]
    await ok(url, "CancelOTATaskByDevice", cancel_params("d2", job_id="J2"))
    assert await tasks_of(url, {"IotId": "iot-d2", **ALL_UNFINISHED}) == []


async def test_cancel_unknown_device_is_a_no_op(emulator: tuple[str, web.Application]) -> None:
    """Cancelling for a device without tasks or unknown to the platform succeeds."""
    await ok(emulator[0], "CancelOTATaskByDevice", cancel_params("big", "ghost"))


async def test_cancel_refuses_repeated_names(emulator: tuple[str, web.Application]) -> None:
    """DeviceName.N values must be unique."""
    code = await failing(emulator[0], "CancelOTATaskByDevice", cancel_params("d1", "d1"))
    assert code == "iot.system.IllegalRequest"


async def test_cancel_refuses_more_than_200_names(emulator: tuple[str, web.Application]) -> None:
    """At most 200 DeviceName.N per call."""
    names = [f"n{i}" for i in range(201)]
    code = await failing(emulator[0], "CancelOTATaskByDevice", cancel_params(*names))
    assert code == "iot.system.IllegalRequest"


async def test_alibaba_casing() -> None:
    """casing="alibaba" answers in PascalCase without an empty Code."""
    with emulator_url(static_fleet(), clock=FakeClock(), casing="alibaba") as (url, _):
        _, _, raw = await call_emulator(
            url, "ListOTAUnfinishedTaskByDevice", {"IotId": "iot-d2", "TaskStatus": "CONFIRM"}
        )
    body = orjson.loads(raw)
    assert body["Success"] is True
    assert "Code" not in body
    assert "RequestId" in body
    assert body["Data"]["SimpleOTATaskInfo"][0]["IotId"] == "iot-d2"


async def test_alibaba_casing_of_business_errors() -> None:
    """casing="alibaba" business errors carry Code and ErrorMessage."""
    with emulator_url(static_fleet(), clock=FakeClock(), casing="alibaba") as (url, _):
        _, _, raw = await call_emulator(url, "QueryOTAFirmware", {"FirmwareId": "F9"})
    body = orjson.loads(raw)
    assert (body["Success"], body["Code"]) == (False, "iot.ota.NotExistedFirmware")
    assert body["ErrorMessage"]
