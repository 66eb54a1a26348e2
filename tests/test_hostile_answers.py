"""Answers that must not be believed, and waits that must not hang: a hostile server on loopback.

Each case damages the emulator's real answer (or invents a gateway's) and pins what the
client makes of it: a success proves itself, anything else is retried and then fails as
`MalformedResponse`; server hints are capped; throttling is bounded by time, not attempts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from aiohttp import web
from hostile import answer, honest, hostile_client, hostile_url, throttled

from fleetaudit.api.client import RetryPolicy
from fleetaudit.errors import CallFailed
from fleetaudit.models import Device, Firmware, Job

from helpers import FakeClock, RecordingSleep, static_fleet

FLEET = static_fleet()
D1 = Device("pk1", "d1", "iot-d1")
BIG = Device("pk1", "big")
BIG_PARAMS = {"Action": "ListOTAModuleVersionsByDevice", "ProductKey": "pk1", "DeviceName": "big"}
TWO_ATTEMPTS = RetryPolicy(attempts=2, wait_initial=0.0)
Body = dict[str, Any]


def damaged(damage: Callable[[Body], object]) -> Callable[[dict[str, str]], Any]:
    """A `respond` that answers every request with `damage(honest answer)`."""

    async def respond(params: dict[str, str]) -> web.Response:
        return answer(damage(honest(FLEET, params)))

    return respond


async def failure_of(call: Callable[[Any], Any], respond: Any) -> tuple[CallFailed, int]:
    """The CallFailed a call ends in against `respond`, and how many requests it took."""
    with hostile_url(respond) as (url, seen):
        async with hostile_client(url, retry=TWO_ATTEMPTS) as client:
            with pytest.raises(CallFailed) as caught:
                await call(client)
    return caught.value, len(seen)


def items(body: Body, name: str) -> list[Any]:
    """The list of a lowerCamel answer, to damage in place."""
    listed: list[Any] = body["data"][name]
    return listed


# --- envelopes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"RequestId": "r1"},
        {"Success": "false", "Code": "iot.device.NotExistedDevice"},
        {"success": "true", "data": {"simpleOTATaskInfo": []}},
        {"Success": 1},
    ],
    ids=["empty", "request-id-only", "string-false", "string-true", "number"],
)
async def test_success_needs_a_real_boolean(body: Body) -> None:
    """An envelope without a boolean `Success: true` is retried, then MalformedResponse."""
    failed, requests = await failure_of(
        lambda client: client.list_unfinished_tasks(D1), damaged(lambda _: body)
    )
    assert (failed.failure.error_code, failed.failure.attempts, requests) == (
        "MalformedResponse",
        2,
        2,
    )


@pytest.mark.parametrize("casing", ["success", "Success"])
async def test_an_empty_answer_in_either_casing_is_valid(casing: str) -> None:
    """`success: true` without Data, or with Total 0, is an empty list, not an error."""

    async def respond(params: dict[str, str]) -> web.Response:
        if params["Action"] == "ListOTAModuleVersionsByDevice":
            return answer({casing: True, "total": 0, "pageCount": 0})
        return answer({casing: True})

    with hostile_url(respond) as (url, _seen):
        async with hostile_client(url) as client:
            assert await client.list_unfinished_tasks(D1) == []
            assert await client.list_module_versions(D1) == []


# --- items ----------------------------------------------------------------------------


def tasks_data(value: object) -> Callable[[Body], Body]:
    return lambda body: {**body, "data": value}


def first_item_without(name: str, key: str) -> Callable[[Body], Body]:
    def damage(body: Body) -> Body:
        del items(body, name)[0][key]
        return body

    return damage


@pytest.mark.parametrize(
    "damage",
    [
        tasks_data("[]"),
        tasks_data({"simpleOTATaskInfo": "T1"}),
        tasks_data({"simpleOTATaskInfo": [1, "T2"]}),
        first_item_without("simpleOTATaskInfo", "taskId"),
        first_item_without("simpleOTATaskInfo", "taskStatus"),
    ],
    ids=["data-string", "list-string", "items-not-objects", "no-task-id", "no-task-status"],
)
async def test_malformed_task_lists(damage: Callable[[Body], Body]) -> None:
    """Data as a string, non-object items, items without TaskId/TaskStatus: MalformedResponse."""
    failed, _ = await failure_of(lambda client: client.list_unfinished_tasks(D1), damaged(damage))
    assert failed.failure.error_code == "MalformedResponse"


@pytest.mark.parametrize("key", ["moduleName", "moduleVersion"])
async def test_modules_without_their_keys_are_malformed(key: str) -> None:
    """A module item without ModuleName or ModuleVersion is MalformedResponse."""
    failed, _ = await failure_of(
        lambda client: client.list_module_versions(D1),
        damaged(first_item_without("simpleOTAModuleInfo", key)),
    )
    assert failed.failure.error_code == "MalformedResponse"


async def test_jobs_without_ids_are_malformed() -> None:
    """A job item without JobId is MalformedResponse."""
    failed, _ = await failure_of(
        lambda client: client.list_jobs_by_device("pk1", "d1", "F1"),
        damaged(first_item_without("simpleOTAJobInfo", "jobId")),
    )
    assert failed.failure.error_code == "MalformedResponse"


@pytest.mark.parametrize(
    "damage",
    [
        lambda body: {k: v for k, v in body.items() if k != "firmwareInfo"},
        lambda body: {**body, "firmwareInfo": "F1"},
        lambda body: {**body, "firmwareInfo": {**body["firmwareInfo"], "firmwareId": "F9"}},
    ],
    ids=["absent", "string", "another-firmware"],
)
async def test_firmware_answer_must_carry_its_firmware(damage: Callable[[Body], Body]) -> None:
    """QueryOTAFirmware without FirmwareInfo, or about another firmware, is malformed."""
    failed, _ = await failure_of(lambda client: client.query_firmware("F1"), damaged(damage))
    assert failed.failure.error_code == "MalformedResponse"


def first_item_of_another(name: str, key: str, value: str) -> Callable[[Body], Body]:
    def damage(body: Body) -> Body:
        items(body, name)[0][key] = value
        return body

    return damage


@pytest.mark.parametrize(
    ("call", "damage"),
    [
        (
            lambda client: client.list_module_versions(D1),
            first_item_of_another("simpleOTAModuleInfo", "deviceName", "d2"),
        ),
        (
            lambda client: client.list_module_versions(D1),
            first_item_of_another("simpleOTAModuleInfo", "iotId", "iot-d2"),
        ),
        (
            lambda client: client.list_unfinished_tasks(D1),
            first_item_of_another("simpleOTATaskInfo", "productKey", "pk9"),
        ),
        (
            lambda client: client.list_jobs_by_device("pk1", "d1", "F1"),
            first_item_of_another("simpleOTAJobInfo", "firmwareId", "F9"),
        ),
    ],
    ids=["module-device-name", "module-iot-id", "task-product", "job-firmware"],
)
async def test_items_of_another_device_are_malformed(
    call: Callable[[Any], Any], damage: Callable[[Body], Body]
) -> None:
    """An item naming another device (or another firmware) than asked is MalformedResponse."""
    failed, _ = await failure_of(call, damaged(damage))
    assert failed.failure.error_code == "MalformedResponse"


# --- pages ----------------------------------------------------------------------------


async def test_a_repeated_page_is_malformed() -> None:
    """A server that answers page 1 for every page is caught, not stored twice."""

    async def respond(params: dict[str, str]) -> web.Response:
        return answer(honest(FLEET, {**params, "CurrentPage": "1"}))

    failed, _ = await failure_of(lambda client: client.list_module_versions(BIG), respond)
    assert failed.failure.error_code == "MalformedResponse"
    assert "repeat" in failed.failure.error_message


async def test_a_page_larger_than_asked_is_malformed() -> None:
    """All 250 of big's modules in one page of 200 is MalformedResponse."""

    def one_page(body: Body) -> Body:
        rest = honest(FLEET, {**BIG_PARAMS, "PageSize": "200", "CurrentPage": "2"})
        items(body, "simpleOTAModuleInfo").extend(items(rest, "simpleOTAModuleInfo"))
        return {**body, "pageCount": 1}

    failed, _ = await failure_of(lambda client: client.list_module_versions(BIG), damaged(one_page))
    assert failed.failure.error_code == "MalformedResponse"


async def test_paging_stops_at_what_the_first_page_promised() -> None:
    """A pager that promises one more page on every page is stopped at once, not at 1000 pages."""

    async def respond(params: dict[str, str]) -> web.Response:
        page = int(params["CurrentPage"])
        listed = [
            {"moduleName": f"p{page}m{i}", "moduleVersion": "1.0", "deviceName": "d1"}
            for i in range(200)
        ]
        return answer(
            {
                "success": True,
                "data": {"simpleOTAModuleInfo": listed},
                "total": 200 * page + 1,
                "pageCount": page + 1,
                "pageSize": 200,
                "currentPage": page,
            }
        )

    failed, requests = await failure_of(lambda client: client.list_module_versions(D1), respond)
    assert failed.failure.error_code == "MalformedResponse"
    assert requests == 3  # page 1, then page 2 twice (it contradicts page 1's promise)


# --- waits ----------------------------------------------------------------------------


async def test_a_server_hint_of_a_day_is_capped(caplog: pytest.LogCaptureFixture) -> None:
    """`x-acs-retry-after: 86400000` pauses the action at most max_server_wait, warned once."""
    calls = 0

    async def respond(params: dict[str, str]) -> web.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return throttled({"x-acs-retry-after": "86400000"})
        return answer(honest(FLEET, params))

    sleep = RecordingSleep()
    caplog.set_level(logging.WARNING, logger="fleetaudit.api.client")
    with hostile_url(respond) as (url, _seen):
        async with hostile_client(url, sleep=sleep) as client:
            firmware = await client.query_firmware("F1")
    assert firmware.firmware_id == "F1"
    assert sleep.waits
    assert max(sleep.waits) <= 60.0
    warned = [r for r in caplog.records if "max_server_wait" in r.getMessage()]
    assert len(warned) == 1


async def test_a_throttling_storm_outlasts_the_retry_attempts() -> None:
    """A 15-second throttling storm is waited out: throttled attempts use no retry_attempts."""
    clock = FakeClock()
    storm_ends = clock() + 15.0

    async def respond(params: dict[str, str]) -> web.Response:
        if clock() < storm_ends:
            return throttled({"x-ratelimit-user-api": "Limit:10,Remain:0,TimeLeft:100"})
        return answer(honest(FLEET, params))

    with hostile_url(respond) as (url, seen):
        async with hostile_client(url, sleep=RecordingSleep(clock), clock=clock) as client:
            firmware = await client.query_firmware("F1")
    assert firmware.firmware_id == "F1"
    assert len(seen) > RetryPolicy().attempts


async def test_endless_throttling_ends_at_the_call_timeout() -> None:
    """Throttled forever, a call retries past retry_attempts until its time is up: Throttling."""

    async def respond(params: dict[str, str]) -> web.Response:
        return throttled({"x-ratelimit-user-api": "Limit:10,Remain:0,TimeLeft:20"})

    policy = RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.05, timeout=0.5)
    with hostile_url(respond) as (url, _seen):
        async with hostile_client(url, sleep=anyio.sleep, retry=policy) as client:
            with pytest.raises(CallFailed) as caught:
                await client.query_firmware("F1")
    failure = caught.value.failure
    assert failure.error_code == "Throttling.User"
    assert failure.attempts > 2


async def test_a_throttled_call_out_of_time_is_not_a_timeout() -> None:
    """A slow throttling server whose last attempt the deadline cuts short: still Throttling."""

    async def respond(params: dict[str, str]) -> web.Response:
        await asyncio.sleep(0.4)  # the server's latency, not the test's synchronization
        return throttled()

    policy = RetryPolicy(wait_initial=0.0, timeout=1.0)
    with hostile_url(respond) as (url, _seen):
        async with hostile_client(url, sleep=anyio.sleep, retry=policy) as client:
            with pytest.raises(CallFailed) as caught:
                await client.query_firmware("F1")
    assert caught.value.failure.error_code == "Throttling.User"


# --- the sweep's listings ---------------------------------------------------------------

J1 = Job("J1", "F1", "pk1", "IN_PROGRESS", None, None, None, None)
F1 = Firmware("F1", None, "pk1", None, "default", None, None, 1, 0, None, None, None, None, None,
              None, None)  # fmt: skip


def listed_firmware(damage: Callable[[list[Any]], object]) -> Callable[[Body], Body]:
    """Damage the firmware list of a ListOTAFirmware answer (it sits under FirmwareInfo)."""

    def apply(body: Body) -> Body:
        damage(body["firmwareInfo"]["simpleFirmwareInfo"])
        return body

    return apply


@pytest.mark.parametrize(
    ("call", "damage"),
    [
        (lambda c: c.list_firmware("pk1"),
         listed_firmware(lambda listed: listed[0].pop("firmwareId"))),
        (lambda c: c.list_firmware("pk1"),
         listed_firmware(lambda listed: listed[0].update(productKey="pk9"))),
        (lambda c: c.list_jobs_by_firmware(F1),
         first_item_without("simpleOTAJobInfo", "jobId")),
        (lambda c: c.list_jobs_by_firmware(F1),
         lambda body: items(body, "simpleOTAJobInfo")[0].update(productKey="pk9") or body),
        (lambda c: c.list_job_tasks(J1, "QUEUED"),
         first_item_without("simpleOTATaskInfo", "deviceName")),
        (lambda c: c.list_job_tasks(J1, "QUEUED"),
         lambda body: items(body, "simpleOTATaskInfo")[0].update(taskStatus="IN_PROGRESS")
         or body),
        (lambda c: c.list_job_tasks(J1, "QUEUED"),
         lambda body: items(body, "simpleOTATaskInfo")[0].update(jobId="J2") or body),
    ],
    ids=["firmware-no-id", "firmware-other-product", "job-no-id", "job-other-product",
         "task-no-device",
         "task-other-status", "task-other-job"],
)  # fmt: skip
async def test_sweep_listings_prove_themselves(
    call: Callable[[Any], Any], damage: Callable[[Body], Body]
) -> None:
    """An item without its keys, or about another product, job or status: MalformedResponse."""
    failed, _ = await failure_of(call, damaged(damage))
    assert failed.failure.error_code == "MalformedResponse"
