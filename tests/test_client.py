"""The API client against the emulator on loopback: casings, paging, faults, auth, pacing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from aiohttp import web

from fleetaudit.api.client import (
    ACTIONS,
    ClientSettings,
    OtaClient,
    RetryPolicy,
    open_client,
)
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.errors import AuthError, CallFailed
from fleetaudit.models import Credentials, Device

from helpers import (
    FIXED_NOW,
    TEST_KEY_ID,
    FakeClock,
    RecordingSleep,
    emulator_url,
    static_fleet,
)

FAST = dict.fromkeys(ACTIONS, 1000.0)  # pacing out of the way where not tested
D1 = Device("pk1", "d1", "iot-d1")


def requests_seen(app: web.Application) -> int:
    """Every request the emulator received, whatever became of it."""
    stats = app[STATS_KEY]
    return sum(stats.served.values()) + sum(stats.throttled.values()) + sum(stats.rejected.values())


@contextmanager
def emulator(**kwargs: Any) -> Iterator[tuple[str, web.Application, FakeClock]]:
    """The static fleet served with a fake clock that the client shares; no quota by default."""
    clock = FakeClock()
    kwargs.setdefault("quotas", dict.fromkeys(ACTIONS, 0.0))  # the fake clock never refills
    with emulator_url(static_fleet(), clock=clock, **kwargs) as (url, app):
        yield url, app, clock


@asynccontextmanager
async def client_for(
    url: str,
    clock: Callable[[], float],
    *,
    credentials: Credentials | None = None,
    sleep: RecordingSleep | None = None,
    **settings: Any,
) -> AsyncIterator[OtaClient]:
    """A client of `url` with fast quotas, a recording sleep and a seeded rng by default."""
    settings.setdefault("quotas", FAST)
    async with open_client(
        ClientSettings(endpoint=url, **settings),
        credentials or Credentials(TEST_KEY_ID, "testsecret"),
        sleep=sleep or RecordingSleep(),
        rng=random.Random(1),
        clock=clock,
    ) as client:
        yield client


@pytest.mark.parametrize("casing", ["tuya", "alibaba"])
async def test_every_action_in_both_casings(casing: str) -> None:
    """All five actions parse the same in lowerCamel and Pascal answers."""
    with emulator(casing=casing) as (url, _app, clock):
        async with client_for(url, clock) as client:
            modules = await client.list_module_versions(D1)
            tasks = await client.list_unfinished_tasks(D1)
            firmware = await client.query_firmware("F1")
            jobs = await client.list_jobs_by_device("pk1", "d1", "F1")
            request_id = await client.cancel_tasks("pk1", "F1", ["d1"])
    assert {(m.module_name, m.module_version) for m in modules} == {
        ("default", "1.0.0"),
        ("ble", "2.0.0"),
    }
    assert all(m.product_key == "pk1" and m.device_name == "d1" for m in modules)
    assert {(t.task_id, t.task_status) for t in tasks} == {("T1", "QUEUED"), ("T2", "IN_PROGRESS")}
    assert all(t.utc_create == int(FIXED_NOW * 1000) - 3 * 86_400_000 for t in tasks)
    assert firmware.firmware_url == "https://ota.example.com/fw/F1.bin"
    assert firmware.firmware_size == 1024
    assert "J1" in {job.job_id for job in jobs}
    assert request_id


async def test_every_page_of_250_modules() -> None:
    """A device with 250 modules is read in full over two pages of 200."""
    with emulator() as (url, app, clock):
        async with client_for(url, clock) as client:
            modules = await client.list_module_versions(Device("pk1", "big"))
    assert len({m.module_name for m in modules}) == 250
    assert app[STATS_KEY].served["ListOTAModuleVersionsByDevice"] == 2


async def test_get_method() -> None:
    """GET requests (with an instance id) are signed for GET and accepted."""
    with emulator() as (url, _app, clock):
        async with client_for(url, clock, method="GET", iot_instance_id="inst-1") as client:
            tasks = await client.list_unfinished_tasks(Device("pk1", "d2"))
    assert [t.task_id for t in tasks] == ["T4"]


async def test_cancel_then_reread() -> None:
    """Cancelling d1's tasks leaves only the one the platform does not cancel (IN_PROGRESS)."""
    with emulator() as (url, _app, clock):
        async with client_for(url, clock) as client:
            await client.cancel_tasks("pk1", "F1", ["d1"], job_id="J1")
            tasks = await client.list_unfinished_tasks(D1)
    assert [t.task_id for t in tasks] == ["T2"]


async def test_missing_device_is_a_final_failure() -> None:
    """An unknown device fails at once with a CallFailed row naming it."""
    sleep = RecordingSleep()
    with emulator() as (url, _app, clock):
        async with client_for(url, clock, sleep=sleep) as client:
            with pytest.raises(CallFailed) as caught:
                await client.list_unfinished_tasks(Device("pk1", "ghost"))
            stats = client.stats.as_dict()["ListOTAUnfinishedTaskByDevice"]
    failure = caught.value.failure
    assert failure.error_code == "iot.device.NotExistedDevice"
    assert (failure.product_key, failure.device_name, failure.attempts) == ("pk1", "ghost", 1)
    assert failure.request_id
    assert sleep.waits == []
    assert stats["failures"] == 1


async def test_wrong_secret_aborts_after_one_call() -> None:
    """A wrong secret raises AuthError after exactly one request, with no string to sign."""
    with emulator() as (url, app, clock):
        async with client_for(url, clock, credentials=Credentials(TEST_KEY_ID, "wrong")) as client:
            with pytest.raises(AuthError) as caught:
                await client.query_firmware("F1")
    assert caught.value.code == "SignatureDoesNotMatch"
    assert requests_seen(app) == 1
    assert "string to sign" not in str(caught.value).lower()
    assert "wrong" not in str(caught.value)


async def test_calls_after_auth_error_are_not_sent() -> None:
    """After an AuthError every later call raises AuthError without reaching the server."""
    with emulator() as (url, app, clock):
        async with client_for(url, clock, credentials=Credentials(TEST_KEY_ID, "wrong")) as client:
            with pytest.raises(AuthError):
                await client.query_firmware("F1")
            with pytest.raises(AuthError, match="SignatureDoesNotMatch"):
                await client.list_module_versions(D1)
    assert requests_seen(app) == 1


async def test_unknown_key_aborts() -> None:
    """An unknown access key id raises AuthError at once."""
    with emulator() as (url, app, clock):
        async with client_for(url, clock, credentials=Credentials("nobody", "x")) as client:
            with pytest.raises(AuthError, match=r"InvalidAccessKeyId\.NotFound"):
                await client.query_firmware("F1")
    assert requests_seen(app) == 1


async def test_clock_skew_says_check_the_clock() -> None:
    """A clock an hour off raises AuthError telling the user to check the clock."""
    with emulator() as (url, _app, clock):
        async with client_for(url, lambda: clock() - 3600) as client:
            with pytest.raises(AuthError, match="check the clock"):
                await client.query_firmware("F1")


async def test_transient_faults_are_retried() -> None:
    """503s, 500s, dropped connections, garbage and truncated bodies are all retried away."""
    plan = FaultPlan(
        seed=3,
        error_rate=0.15,
        drop_rate=0.1,
        garbage_rate=0.1,
        truncated_rate=0.1,
        system_error_rate=0.1,
    )
    sleep = RecordingSleep()
    with emulator(faults=plan) as (url, app, clock):
        async with client_for(url, clock, sleep=sleep, retry=RetryPolicy(attempts=20)) as client:
            firmware = await asyncio.gather(*(client.query_firmware("F1") for _ in range(30)))
            snapshot = client.stats.snapshot()
    assert {f.firmware_id for f in firmware} == {"F1"}
    assert set(app[STATS_KEY].faults) == {"error", "drop", "garbage", "truncated", "system_error"}
    assert snapshot.retries == len(sleep.waits) > 0
    assert not app[STATS_KEY].rejected  # every retry was signed afresh (no nonce reused)
    assert snapshot.failures == 0


async def test_retries_exhausted_become_call_failed() -> None:
    """A call failing every attempt raises CallFailed after `attempts` tries."""
    sleep = RecordingSleep()
    with emulator(faults=FaultPlan(error_rate=1.0, error_statuses=(503,))) as (url, _app, clock):
        policy = RetryPolicy(attempts=3, wait_initial=0.1, wait_max=0.5)
        async with client_for(url, clock, sleep=sleep, retry=policy) as client:
            with pytest.raises(CallFailed) as caught:
                await client.list_jobs_by_device("pk1", "d1", "F1")
    failure = caught.value.failure
    assert (failure.error_code, failure.http_status, failure.attempts) == (
        "ServiceUnavailable",
        503,
        3,
    )
    assert (failure.product_key, failure.device_name, failure.firmware_id) == ("pk1", "d1", "F1")
    assert len(sleep.waits) == 2
    assert all(0 <= wait <= 0.5 for wait in sleep.waits)


async def test_throttling_is_absorbed() -> None:
    """Calls far over the emulator's quota are throttled, slowed down and all answered."""
    with emulator(quotas={"QueryOTAFirmware": 5.0}) as (url, app, clock):
        sleep = RecordingSleep(clock)  # retry waits move the emulator's quota clock
        async with client_for(url, clock, sleep=sleep) as client:
            answers = await asyncio.gather(*(client.query_firmware("F1") for _ in range(40)))
            stats = client.stats.as_dict()["QueryOTAFirmware"]
    assert len(answers) == 40
    assert app[STATS_KEY].throttled["QueryOTAFirmware"] == stats["throttled"] > 0
    assert stats["failures"] == 0
    # The server's TimeLeft hint (200 ms at 5/s) was honoured.
    assert max(sleep.waits) >= 0.19


async def test_stats_as_dict_is_per_action() -> None:
    """Statistics are keyed by action with counters and latency percentiles."""
    with emulator() as (url, _app, clock):
        async with client_for(url, clock) as client:
            await client.query_firmware("F1")
            stats = client.stats.as_dict()
    assert set(stats) == set(ACTIONS)
    firmware = stats["QueryOTAFirmware"]
    assert firmware["calls"] == 1
    assert firmware["latency_ms_p50"] is not None
    assert stats["CancelOTATaskByDevice"]["latency_ms_p99"] is None


async def test_repr_hides_the_secret() -> None:
    """The client's repr names the endpoint and key id, never the secret."""
    with emulator() as (url, _app, clock):
        async with client_for(url, clock) as client:
            assert "testsecret" not in repr(client)


async def test_timeout_is_retried_then_fails() -> None:
    """An answer slower than the request timeout is a retried Timeout, then a CallFailed."""
    sleep = RecordingSleep()
    with emulator(faults=FaultPlan(latency=0.5)) as (url, _app, clock):
        policy = RetryPolicy(attempts=2)
        async with client_for(
            url, clock, sleep=sleep, retry=policy, request_timeout=0.05
        ) as client:
            with pytest.raises(CallFailed) as caught:
                await client.query_firmware("F1")
    assert (caught.value.failure.error_code, caught.value.failure.attempts) == ("Timeout", 2)
    assert len(sleep.waits) == 1


def test_settings_reject_a_zero_quota() -> None:
    """A quota of zero calls per second is refused up front."""
    with pytest.raises(ValueError, match="quota"):
        ClientSettings(endpoint="http://127.0.0.1:1/", quotas={"QueryOTAFirmware": 0.0})
