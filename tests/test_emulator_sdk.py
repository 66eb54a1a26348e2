"""Outside check: the platform's official SDK (aliyun-python-sdk-core) is accepted as is,
and the same signed URL with one byte changed is refused."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from helpers import TEST_KEY_ID, TEST_SECRET, emulator_url, static_fleet


@pytest.fixture
def url() -> Iterator[str]:
    """An emulator on the real clock, since the SDK stamps requests with the real time."""
    with emulator_url(static_fleet()) as (base_url, _):
        yield base_url


def sdk_request(url: str, method: str) -> CommonRequest:
    """A ListOTAUnfinishedTaskByDevice CommonRequest aimed at the emulator over plain HTTP."""
    request = CommonRequest(
        domain=url.removeprefix("http://").rstrip("/"),
        version="2018-01-20",
        action_name="ListOTAUnfinishedTaskByDevice",
    )
    request.set_protocol_type("http")
    request.set_method(method)
    request.set_accept_format("JSON")
    request.add_query_param("IotId", "iot-d1")
    request.add_query_param("TaskStatusList.1", "QUEUED")
    request.add_query_param("TaskStatusList.2", "IN_PROGRESS")
    return request


@contextmanager
def sdk_client(secret: str = TEST_SECRET) -> Iterator[AcsClient]:
    """An SDK client with the emulator's test key id, without retries.

    Its connection pool is closed on the way out: left to the garbage collector, a pooled
    socket surfaces as a ResourceWarning in whichever test happens to run next.
    """
    client = AcsClient(TEST_KEY_ID, secret, "cn-shanghai", auto_retry=False, timeout=10)
    try:
        yield client
    finally:
        client.session.close()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_sdk_request_is_accepted(url: str, method: str) -> None:
    """A request signed by the official SDK lists d1's two unfinished tasks."""
    with sdk_client() as client:
        body = orjson.loads(client.do_action_with_exception(sdk_request(url, method)))
    assert body["success"] is True
    assert sorted(t["taskId"] for t in body["data"]["simpleOTATaskInfo"]) == ["T1", "T2"]


def test_sdk_sees_signature_errors(url: str) -> None:
    """The SDK with a wrong secret gets SignatureDoesNotMatch."""
    with sdk_client(secret="wrong") as wrong, pytest.raises(ServerException) as caught:
        wrong.do_action_with_exception(sdk_request(url, "POST"))
    assert caught.value.get_error_code() == "SignatureDoesNotMatch"


def test_one_changed_byte_is_refused(url: str) -> None:
    """The SDK's signed URL is accepted as is and refused once one parameter byte changes."""
    common = sdk_request(url, "GET")
    common.trans_to_acs_request()
    query = common.request.get_url("cn-shanghai", TEST_KEY_ID, TEST_SECRET)
    with urllib.request.urlopen(url + query.lstrip("/")) as response:
        assert response.status == 200
    tampered = query.replace("IotId=iot-d1", "IotId=iot-d2")
    assert tampered != query
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url + tampered.lstrip("/"))
    assert caught.value.code == 400
    assert orjson.loads(caught.value.read())["Code"] == "SignatureDoesNotMatch"
    caught.value.close()
