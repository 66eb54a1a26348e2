"""Injected faults over loopback: each kind, reproducibility, devices that always fail."""

from __future__ import annotations

import random

import aiohttp
import orjson
import pytest

from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.faults import FaultPlan, pick_fault

from helpers import FakeClock, call_emulator, emulator_url, static_fleet

FIRMWARE = {"FirmwareId": "F1"}


async def one_call(plan: FaultPlan) -> tuple[int, bytes]:
    """Status and body of a single QueryOTAFirmware under `plan`."""
    with emulator_url(static_fleet(), clock=FakeClock(), faults=plan) as (url, _):
        status, _, body = await call_emulator(url, "QueryOTAFirmware", FIRMWARE)
    return status, body


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "ServiceUnavailable")])
async def test_error_fault(status: int, code: str) -> None:
    """error_rate=1 answers a gateway error body with the configured status."""
    got, body = await one_call(FaultPlan(error_rate=1.0, error_statuses=(status,)))
    assert (got, orjson.loads(body)["Code"]) == (status, code)


async def test_garbage_fault() -> None:
    """garbage_rate=1 answers 502 with an HTML page."""
    status, body = await one_call(FaultPlan(garbage_rate=1.0))
    assert status == 502
    assert body.startswith(b"<html>")


async def test_truncated_fault() -> None:
    """truncated_rate=1 answers 200 with JSON cut short."""
    status, body = await one_call(FaultPlan(truncated_rate=1.0))
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)


async def test_system_error_fault() -> None:
    """system_error_rate=1 answers 200 with iot.system.SystemException."""
    status, body = await one_call(FaultPlan(system_error_rate=1.0))
    assert (status, orjson.loads(body)["code"]) == (200, "iot.system.SystemException")


async def test_drop_fault() -> None:
    """drop_rate=1 closes the connection without any response."""
    with (
        emulator_url(static_fleet(), clock=FakeClock(), faults=FaultPlan(drop_rate=1.0)) as (
            url,
            app,
        ),
        pytest.raises(aiohttp.ServerDisconnectedError),
    ):
        await call_emulator(url, "QueryOTAFirmware", FIRMWARE)
    assert app[STATS_KEY].faults["drop"] == 1


async def test_latency_fault_still_answers() -> None:
    """A uniform latency delays but does not change the answer."""
    status, body = await one_call(FaultPlan(latency=(0.001, 0.002)))
    assert (status, orjson.loads(body)["success"]) == (200, True)


async def test_faults_come_after_auth() -> None:
    """A badly signed call is refused by the gateway even when every call should fail."""
    with emulator_url(static_fleet(), clock=FakeClock(), faults=FaultPlan(error_rate=1.0)) as (
        url,
        _,
    ):
        status, _, body = await call_emulator(url, "QueryOTAFirmware", FIRMWARE, secret="bad")
    assert (status, orjson.loads(body)["Code"]) == (400, "SignatureDoesNotMatch")


async def test_failing_device_fails_every_time() -> None:
    """A device in failing_devices gets its error code on every call, by name or IotId."""
    plan = FaultPlan(failing_devices={"d1": "iot.common.AuthActionPermissionDeny"})
    with emulator_url(static_fleet(), clock=FakeClock(), faults=plan) as (url, _):
        codes = [
            orjson.loads((await call_emulator(url, "ListOTAUnfinishedTaskByDevice", params))[2])[
                "code"
            ]
            for params in (
                {"IotId": "iot-d1", "TaskStatus": "QUEUED"},
                {"ProductKey": "pk1", "DeviceName": "d1", "TaskStatus": "QUEUED"},
                {"IotId": "iot-d2", "TaskStatus": "QUEUED"},
            )
        ]
    assert codes == ["iot.common.AuthActionPermissionDeny"] * 2 + [""]


def test_fault_draws_are_reproducible() -> None:
    """The same seed draws the same sequence of faults."""
    plan = FaultPlan(error_rate=0.2, drop_rate=0.1, garbage_rate=0.1, truncated_rate=0.1)
    rng_a, rng_b = random.Random(7), random.Random(7)
    assert [pick_fault(plan, rng_a) for _ in range(200)] == [
        pick_fault(plan, rng_b) for _ in range(200)
    ]


def test_fault_rates_are_validated() -> None:
    """Rates summing over 1 are refused."""
    with pytest.raises(ValueError, match="sum to at most 1"):
        FaultPlan(error_rate=0.6, drop_rate=0.6)
