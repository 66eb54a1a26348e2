"""The pure protocol layer: request parameters, both response casings, times, error classes."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson
import pytest

from fleetaudit.api import protocol, responses
from fleetaudit.errors import ApiError, AuthError, TransientError
from fleetaudit.models import Device
from fleetaudit.terms import Action

DEVICE = Device("pk1", "dev1")
DEVICE_WITH_ID = Device("pk1", "dev1", "iot-1")

TASK_CAMEL = {
    "destVersion": "3.9.0",
    "deviceName": "device_actived",
    "firmwareId": "123",
    "iotId": "OZs5tjTkzRRTZSCekmbRk1",
    "jobId": "1833712077429010001",
    "moduleName": "ble",
    "productKey": "k1h9drZ",
    "productName": "testProduct1",
    "srcVersion": "1.8",
    "taskId": "1833712077827470001",
    "taskStatus": "NOTIFIED",
    "utcCreate": "2024-09-11T03:40:02.734Z",
    "utcModified": "2024-09-11T06:27:24.649Z",
    "somethingNew": {"ignored": True},
}
TASK_PASCAL = {key[0].upper() + key[1:]: value for key, value in TASK_CAMEL.items()}


def test_pure_modules_import_no_io_libraries() -> None:
    """protocol, responses, retry and stats import neither aiohttp nor anyio (nor asyncio)."""
    package = Path(protocol.__file__).parent
    for name in ("protocol.py", "responses.py", "retry.py", "stats.py"):
        tree = ast.parse((package / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert not imported & {"aiohttp", "anyio", "asyncio"}, name


def test_actions_and_default_quotas() -> None:
    """Eight actions (five per device, three of the sweep), 10/s each but QueryOTAFirmware."""
    assert len(protocol.ACTIONS) == 8
    assert protocol.DEFAULT_QUOTAS[Action.QUERY_FIRMWARE] == 20.0
    assert {protocol.DEFAULT_QUOTAS[a] for a in protocol.ACTIONS if a != "QueryOTAFirmware"} == {
        10.0
    }


def test_common_params_carry_version_format_and_instance() -> None:
    """Common parameters name the action, version, JSON format and the optional instance id."""
    params = protocol.common_params(
        "QueryOTAFirmware", "kid", nonce="n1", timestamp="t", iot_instance_id="iot-inst"
    )
    assert params["Version"] == "2018-01-20"
    assert params["Format"] == "JSON"
    assert params["SignatureMethod"] == "HMAC-SHA1"
    assert params["IotInstanceId"] == "iot-inst"
    assert "Signature" not in params


def test_timestamp_is_utc_seconds_with_z() -> None:
    """The Timestamp parameter is UTC `YYYY-MM-DDThh:mm:ssZ`."""
    assert protocol.format_timestamp(1732009663.9) == "2024-11-19T09:47:43Z"


def test_device_params_prefer_iot_id() -> None:
    """A device with an IotId is sent by IotId alone, else by ProductKey and DeviceName."""
    assert protocol.device_params(DEVICE_WITH_ID) == {"IotId": "iot-1"}
    assert protocol.device_params(DEVICE) == {"ProductKey": "pk1", "DeviceName": "dev1"}


def test_unfinished_task_params_flatten_statuses() -> None:
    """Statuses go out as TaskStatusList.1..N, with ModuleName only when given."""
    params = protocol.unfinished_tasks_params(DEVICE, ("QUEUED", "NOTIFIED"), None)
    assert params["TaskStatusList.1"] == "QUEUED"
    assert params["TaskStatusList.2"] == "NOTIFIED"
    assert "ModuleName" not in params
    assert protocol.unfinished_tasks_params(DEVICE, ("QUEUED",), "ble")["ModuleName"] == "ble"


def test_cancel_params_dedupe_and_limit_names() -> None:
    """Cancel sends unique DeviceName.N, JobId when given, and refuses over 200 names."""
    params = protocol.cancel_params("pk", "168", ["a", "b", "a"], "job9")
    assert params == {
        "ProductKey": "pk",
        "FirmwareId": "168",
        "DeviceName.1": "a",
        "DeviceName.2": "b",
        "JobId": "job9",
    }
    with pytest.raises(ValueError, match="200"):
        protocol.cancel_params("pk", "1", [f"d{i}" for i in range(201)], None)


def test_paged_params() -> None:
    """Paged actions send CurrentPage and PageSize."""
    params = protocol.jobs_params("pk", "dev", "fw", 3, 100)
    assert params["CurrentPage"] == "3"
    assert params["PageSize"] == "100"
    assert protocol.module_versions_params(DEVICE, 1, 200)["PageSize"] == "200"


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("2024-09-11T03:40:02.734Z", 1726026002734),
        ("2024-11-11 T11:11:11.000Z", 1731323471000),
        ("2024-11-11T11:11:11Z", 1731323471000),
        ("2024-11-11T12:11:11+01:00", 1731323471000),
        (1731323471000, 1731323471000),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_utc_ms(text: object, millis: int | None) -> None:
    """Both documented time formats (and epoch ms) become UTC epoch milliseconds."""
    assert responses.parse_utc_ms(text) == millis


TASK_DEVICE = Device("k1h9drZ", "device_actived", "OZs5tjTkzRRTZSCekmbRk1")


@pytest.mark.parametrize("item", [TASK_CAMEL, TASK_PASCAL], ids=["camel", "pascal"])
def test_parse_task_in_both_casings(item: dict[str, object]) -> None:
    """A task reads the same in lowerCamel and Pascal casing; unknown fields are ignored."""
    task = responses.parse_task(item, TASK_DEVICE)
    assert task.task_id == "1833712077827470001"
    assert task.job_id == "1833712077429010001"
    assert task.task_status == "NOTIFIED"
    assert task.product_key == "k1h9drZ"
    assert task.utc_create == 1726026002734


def test_parse_task_fills_device_from_request() -> None:
    """Missing product key and device name come from the device asked about."""
    task = responses.parse_task({"taskId": "1", "taskStatus": "WEIRD_NEW"}, DEVICE_WITH_ID)
    assert (task.product_key, task.device_name, task.iot_id) == ("pk1", "dev1", "iot-1")
    assert task.task_status == "WEIRD_NEW"
    assert task.module_name == "default"


def test_parse_module_keeps_numeric_ids_as_strings() -> None:
    """An id sent as a JSON number is kept as its string."""
    module = responses.parse_module({"ModuleName": "ble", "ModuleVersion": 2, "IotId": 123}, DEVICE)
    assert module.module_version == "2"
    assert module.iot_id == "123"
    assert module.device_name == "dev1"


def test_parse_firmware_strips_presigned_query() -> None:
    """The firmware URL loses its query string; integers are parsed."""
    envelope = {
        "firmwareInfo": {
            "firmwareId": "134",
            "firmwareUrl": "https://oss.example.com/ota/fw.bin?Expires=1&Signature=abc%3D",
            "firmwareSize": 1152925,
            "status": "-1",
            "type": 0,
            "utcCreate": "2024-09-18T09:32:00.937Z",
        }
    }
    firmware = responses.parse_firmware(envelope, "134")
    assert firmware.firmware_url == "https://oss.example.com/ota/fw.bin"
    assert firmware.firmware_size == 1152925
    assert firmware.status == -1
    assert firmware.type == 0


def test_parse_job_pascal() -> None:
    """A Pascal-cased job parses with its enums kept as given."""
    job = responses.parse_job({"JobId": "9", "JobStatus": "PLANNED", "TargetSelection": "GRAY"})
    assert (job.job_id, job.job_status, job.target_selection) == ("9", "PLANNED", "GRAY")


@pytest.mark.parametrize(
    "envelope",
    [
        {},
        {"Data": None},
        {"data": {}},
        {"Data": {"SimpleOTATaskInfo": None}},
        {"Data": ""},
        {"Data": []},
    ],
)
def test_missing_data_is_empty_list(envelope: dict[str, object]) -> None:
    """A missing or empty Data or list is an empty list."""
    assert responses.list_items(envelope, "SimpleOTATaskInfo") == []


def test_list_items_in_both_casings() -> None:
    """Data.SimpleOTATaskInfo and data.simpleOTATaskInfo are both read."""
    assert responses.list_items({"data": {"simpleOTATaskInfo": [{"a": 1}]}}, "SimpleOTATaskInfo")
    assert responses.list_items({"Data": {"SimpleOTATaskInfo": [{"a": 1}]}}, "SimpleOTATaskInfo")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SignatureDoesNotMatch", 400, "auth"),
        ("InvalidAccessKeyId.NotFound", 404, "auth"),
        ("InvalidAccessKeyId.Inactive", 400, "auth"),
        ("InvalidTimeStamp.Expired", 400, "auth"),
        ("iot.common.AuthActionPermissionDeny", 200, "auth"),
        ("iot.common.RamActionPermissionDeny", 200, "auth"),
        ("iot.system.InstanceNotFound", 200, "auth"),
        ("iot.Sre.IotInstanceNotFound", 200, "auth"),
        ("iot.common.InvalidTenant", 200, "auth"),
        ("Throttling", 400, "retryable"),
        ("Throttling.User", 429, "retryable"),
        ("InternalError", 500, "retryable"),
        ("ServiceUnavailable", 503, "retryable"),
        ("iot.system.SystemException", 200, "retryable"),
        ("SignatureNonceUsed", 400, "retryable"),
        ("HTTP502", 502, "retryable"),
        ("MissingParameter", 400, "final"),
        ("InvalidApi.NotFound", 404, "final"),
        ("iot.device.NotExistedDevice", 200, "final"),
        ("iot.ota.SomethingUndocumented", 200, "final"),
        ("iot.common.InvalidPageParams", 200, "final"),
    ],
)
def test_classify_error(code: str, status: int, expected: str) -> None:
    """Each documented code falls in its class; unknown iot.* codes are final."""
    assert protocol.classify_error(code, status) == expected


def test_redact_cuts_string_to_sign() -> None:
    """The `server string to sign is:` tail never survives."""
    message = "Specified signature is not matched. server string to sign is:POST&%2F&AccessKeyId"
    assert protocol.redact_message(message) == "Specified signature is not matched."


def test_signature_error_raises_auth_without_tail() -> None:
    """A SignatureDoesNotMatch answer is an AuthError whose text has no string to sign."""
    body = orjson.dumps(
        {
            "RequestId": "r1",
            "Code": "SignatureDoesNotMatch",
            "Message": "bad. Server string to sign is:POST&%2F&AccessKeyId%3Dkid",
        }
    )
    with pytest.raises(AuthError) as caught:
        responses.decode_response(400, body)
    assert "kid" not in str(caught.value)
    assert "string to sign" not in str(caught.value).lower()


def test_expired_timestamp_says_check_the_clock() -> None:
    """InvalidTimeStamp.Expired tells the user to check the clock."""
    body = orjson.dumps({"Code": "InvalidTimeStamp.Expired", "Message": "expired"})
    with pytest.raises(AuthError, match="check the clock"):
        responses.decode_response(400, body)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("SignatureDoesNotMatch", "check FLEETAUDIT_ACCESS_KEY_SECRET"),
        ("InvalidAccessKeyId.NotFound", "check FLEETAUDIT_ACCESS_KEY_ID"),
        ("InvalidAccessKeyId.Inactive", "check FLEETAUDIT_ACCESS_KEY_ID"),
        ("iot.common.RamActionPermissionDeny", "lacks permission"),
    ],
)
def test_auth_errors_say_what_to_check(code: str, hint: str) -> None:
    """Each credential or permission error tells the operator what to check."""
    body = orjson.dumps({"Code": code, "Message": "refused"})
    with pytest.raises(AuthError, match=hint):
        responses.decode_response(400, body)


def test_business_error_on_http_200() -> None:
    """HTTP 200 with success false is an error carrying its code and request id."""
    body = orjson.dumps(
        {"requestId": "r2", "success": False, "code": "iot.device.NotExistedDevice"}
    )
    with pytest.raises(ApiError) as caught:
        responses.decode_response(200, body)
    assert not isinstance(caught.value, TransientError)
    assert caught.value.code == "iot.device.NotExistedDevice"
    assert caught.value.request_id == "r2"


def test_camel_success_with_empty_code() -> None:
    """`"code": ""` with success true is a success."""
    body = orjson.dumps({"code": "", "requestId": "r3", "success": True})
    assert responses.request_id_of(responses.decode_response(200, body)) == "r3"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (200, b'{"RequestId": "r", "Succ', "MalformedResponse"),
        (200, b"", "MalformedResponse"),
        (200, b"[1, 2]", "MalformedResponse"),
        (502, b"<html>502 Bad Gateway</html>", "HTTP502"),
        (429, b"slow down", "Throttling"),
    ],
)
def test_broken_bodies_are_transient(status: int, body: bytes, code: str) -> None:
    """Truncated, empty or non-JSON bodies are transient errors worth retrying."""
    with pytest.raises(TransientError) as caught:
        responses.decode_response(status, body)
    assert caught.value.code == code


def test_proxy_404_is_final() -> None:
    """A non-JSON 404 from a proxy is final, not retried."""
    with pytest.raises(ApiError) as caught:
        responses.decode_response(404, b"not here")
    assert not isinstance(caught.value, TransientError)


def test_throttling_error_carries_retry_after() -> None:
    """A throttling answer keeps the server's hint for the retry."""
    body = orjson.dumps({"Code": "Throttling.User", "Message": "Request was denied"})
    with pytest.raises(TransientError) as caught:
        responses.decode_response(400, body, retry_after=0.12)
    assert caught.value.throttled
    assert caught.value.retry_after == 0.12


def test_ratelimit_header() -> None:
    """`x-ratelimit-user-api` parses into its fields and TimeLeft becomes seconds."""
    header = "Limit:10,Remain:0,TimeLeft:120,Reset:1732009663120"
    assert protocol.parse_ratelimit_header(header)["Limit"] == "10"
    assert protocol.retry_after_seconds(None, header) == pytest.approx(0.12)
    assert protocol.retry_after_seconds("250", header) == pytest.approx(0.25)
    assert protocol.retry_after_seconds(None, "garbage") is None


def page_of(count: int, **promise: int) -> dict[str, object]:
    """A successful page of `count` module items with the given Total/PageCount."""
    listed = [{"ModuleName": f"m{i}", "ModuleVersion": "1"} for i in range(count)]
    return {"Success": True, "Data": {"SimpleOTAModuleInfo": listed}, **promise}


def test_listing_stops_at_the_first_pages_promise() -> None:
    """A listing of Total 250 in pages of 200 reads two pages, then stops."""
    listing = responses.module_listing(DEVICE, 200)
    assert listing.accept(listing.read(page_of(200, Total=250)))
    second = page_of(50, Total=250)
    second["Data"] = {
        "SimpleOTAModuleInfo": [{"ModuleName": f"n{i}", "ModuleVersion": "1"} for i in range(50)]
    }
    assert not listing.accept(listing.read(second))
    assert len(listing.items) == 250


@pytest.mark.parametrize(
    "envelope",
    [page_of(201, Total=201), page_of(10), page_of(10, Total=20), page_of(5, Total=10**9)],
    ids=["over-page-size", "no-totals", "short-page-before-last", "beyond-max-pages"],
)
def test_listing_refuses_inconsistent_pages(envelope: dict[str, object]) -> None:
    """Pages over PageSize, without totals, short before the last, or endless are malformed."""
    with pytest.raises(TransientError) as caught:
        responses.module_listing(DEVICE, 200).read(envelope)
    assert caught.value.code == "MalformedResponse"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "download failed: https://cdn.example.com/fw.bin?Expires=1&Signature=abc#x, retry",
            "download failed: https://cdn.example.com/fw.bin retry",
        ),
        ("timed out after 30 min", "timed out after 30 min"),
        (None, None),
    ],
)
def test_free_text_loses_url_query_strings(text: str | None, kept: str | None) -> None:
    """A task description quoting a presigned link keeps the link without its query."""
    assert responses.strip_url_queries(text) == kept
