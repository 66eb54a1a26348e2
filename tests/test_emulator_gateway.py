"""The emulator's gateway: signed calls accepted, every refusal, quotas on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.quota import QuotaBook

from helpers import (
    FIXED_NOW,
    FakeClock,
    call_emulator,
    emulator_url,
    signed_params,
    static_fleet,
)

FIRMWARE = {"FirmwareId": "F1"}


@pytest.fixture
def emulator() -> Iterator[tuple[str, web.Application]]:
    """An emulator over the static fleet with a fixed clock and no quotas."""
    with emulator_url(static_fleet(), clock=FakeClock(), quotas={"QueryOTAFirmware": 0}) as served:
        yield served


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_signed_call_is_accepted(emulator: tuple[str, web.Application], method: str) -> None:
    """A correctly signed GET or POST with query parameters gets the firmware."""
    url, _ = emulator
    status, _, body = await call_emulator(url, "QueryOTAFirmware", FIRMWARE, method=method)
    assert status == 200
    assert orjson.loads(body)["firmwareInfo"]["firmwareId"] == "F1"


async def test_form_body_post_is_accepted(emulator: tuple[str, web.Application]) -> None:
    """A POST whose parameters sit in a form body is verified and answered."""
    url, _ = emulator
    status, _, body = await call_emulator(url, "QueryOTAFirmware", FIRMWARE, form=True)
    assert (status, orjson.loads(body)["success"]) == (200, True)


async def gateway_error(url: str, **kwargs: object) -> tuple[int, str, str]:
    """Send one call expected to be refused by the gateway; (status, code, message)."""
    action = str(kwargs.pop("action", "QueryOTAFirmware"))
    status, _, body = await call_emulator(url, action, FIRMWARE, **kwargs)  # type: ignore[arg-type]
    error = orjson.loads(body)
    assert set(error) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    return status, error["Code"], error["Message"]


async def test_unknown_key_id(emulator: tuple[str, web.Application]) -> None:
    """An unknown AccessKeyId is refused with 404 InvalidAccessKeyId.NotFound."""
    status, code, _ = await gateway_error(emulator[0], key_id="nobody")
    assert (status, code) == (404, "InvalidAccessKeyId.NotFound")


async def test_bad_signature_echoes_string_to_sign(emulator: tuple[str, web.Application]) -> None:
    """A wrong secret is refused with SignatureDoesNotMatch and the server's string to sign."""
    status, code, message = await gateway_error(emulator[0], secret="wrong")
    assert (status, code) == (400, "SignatureDoesNotMatch")
    assert message.split("server string to sign is:")[1].startswith("POST&%2F&AccessKeyId%3D")


async def test_replayed_nonce(emulator: tuple[str, web.Application]) -> None:
    """A nonce used once is refused the second time with SignatureNonceUsed."""
    await call_emulator(emulator[0], "QueryOTAFirmware", FIRMWARE, nonce="n-1")
    status, code, _ = await gateway_error(emulator[0], nonce="n-1")
    assert (status, code) == (400, "SignatureNonceUsed")


async def test_expired_timestamp(emulator: tuple[str, web.Application]) -> None:
    """A timestamp more than 15 minutes off the emulator's clock is InvalidTimeStamp.Expired."""
    status, code, _ = await gateway_error(emulator[0], now=FIXED_NOW - 16 * 60)
    assert (status, code) == (400, "InvalidTimeStamp.Expired")


async def test_unknown_action(emulator: tuple[str, web.Application]) -> None:
    """An action the API does not have is 404 InvalidApi.NotFound."""
    status, code, _ = await gateway_error(emulator[0], action="ListOTADevices")
    assert (status, code) == (404, "InvalidApi.NotFound")


async def test_missing_common_parameter(emulator: tuple[str, web.Application]) -> None:
    """A request without SignatureNonce is 400 MissingSignatureNonce."""
    params = signed_params("GET", "QueryOTAFirmware", FIRMWARE)
    del params["SignatureNonce"]
    status, code, _ = await gateway_error_raw(emulator[0], params)
    assert (status, code) == (400, "MissingSignatureNonce")


async def test_format_is_case_insensitive(emulator: tuple[str, web.Application]) -> None:
    """`Format=json` is accepted like `JSON`."""
    status, _, _ = await call_emulator(
        emulator[0], "QueryOTAFirmware", {**FIRMWARE, "Format": "json"}
    )
    assert status == 200


async def test_wrong_version(emulator: tuple[str, web.Application]) -> None:
    """Any Version but 2018-01-20 is refused."""
    params = signed_params("GET", "QueryOTAFirmware", {**FIRMWARE, "Version": "2017-04-20"})
    status, code, _ = await gateway_error_raw(emulator[0], params)
    assert (status, code) == (400, "InvalidVersion")


async def gateway_error_raw(url: str, params: dict[str, str]) -> tuple[int, str, str]:
    """Send ready-made parameters with GET; (status, code, message) of the gateway error."""
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        error = orjson.loads(await response.read())
        return response.status, error["Code"], error["Message"]


async def test_throttling_follows_the_fake_clock() -> None:
    """Past one second's worth of calls the next is throttled until the clock moves on."""
    clock = FakeClock()
    with emulator_url(static_fleet(), clock=clock, quotas={"QueryOTAFirmware": 2}) as (url, app):
        statuses = [(await call_emulator(url, "QueryOTAFirmware", FIRMWARE))[0] for _ in range(3)]
        clock.advance(0.5)
        after_refill = (await call_emulator(url, "QueryOTAFirmware", FIRMWARE))[0]
    assert statuses == [200, 200, 400]
    assert after_refill == 200
    assert app[STATS_KEY].throttled["QueryOTAFirmware"] == 1


async def test_throttled_answer_carries_the_rate_limit_header() -> None:
    """A throttled call is Throttling.User with status 429 when configured, and TimeLeft."""
    clock = FakeClock()
    kwargs = {"clock": clock, "quotas": {"QueryOTAFirmware": 1}, "throttle_status": 429}
    with emulator_url(static_fleet(), **kwargs) as (url, _):
        await call_emulator(url, "QueryOTAFirmware", FIRMWARE)
        status, headers, body = await call_emulator(url, "QueryOTAFirmware", FIRMWARE)
    assert (status, orjson.loads(body)["Code"]) == (429, "Throttling.User")
    reset_ms = int(FIXED_NOW * 1000) + 1000
    assert headers["x-ratelimit-user-api"] == f"Limit:1,Remain:0,TimeLeft:1000,Reset:{reset_ms}"


async def test_quotas_are_per_action() -> None:
    """Exhausting one action's quota leaves another action's untouched."""
    clock = FakeClock()
    with emulator_url(static_fleet(), clock=clock, quotas={"QueryOTAFirmware": 1}) as (url, _):
        await call_emulator(url, "QueryOTAFirmware", FIRMWARE)
        status, _, _ = await call_emulator(
            url, "ListOTAUnfinishedTaskByDevice", {"IotId": "iot-d1", "TaskStatus": "QUEUED"}
        )
    assert status == 200


def test_ram_users_of_one_account_share_its_quota() -> None:
    """Two key ids mapped to one account draw from one bucket; a third key has its own."""
    book = QuotaBook({"A": 1.0}, lambda: 0.0, accounts={"ram-1": "acct", "ram-2": "acct"})
    assert book.take("ram-1", "A") is None
    assert book.take("ram-2", "A") is not None
    assert book.take("other", "A") is None
