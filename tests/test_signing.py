"""Signature version 1.0 against NOTES.md's known answers, byte for byte."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetaudit.api.signing import (
    canonical_query,
    percent_encode,
    sign,
    signed_query,
    string_to_sign,
)

SECRET = "testsecret"

DOCS_EXAMPLE = {
    "AccessKeyId": "testid",
    "Action": "Pub",
    "Format": "XML",
    "MessageContent": "aGVsbG93b3JsZA=",
    "ProductKey": "12345abcdeZ",
    "Qos": "0",
    "RegionId": "cn-shanghai",
    "ServiceCode": "iot",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "0715a395-aedf-4a41-bab7-746b43d38d88",
    "SignatureVersion": "1.0",
    "Timestamp": "2017-10-02T09:39:41Z",
    "TopicFullName": "/productKey/testdevice/get",
    "Version": "2017-04-20",
}

UNFINISHED_TASKS = {
    "AccessKeyId": "testid",
    "Action": "ListOTAUnfinishedTaskByDevice",
    "Format": "JSON",
    "IotId": "OZs5tjTkzRRTZSCekmbRk1000100",
    "ModuleName": "default",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "9e6189124f5a4716ad2de849467b0001",
    "SignatureVersion": "1.0",
    "TaskStatusList.1": "QUEUED",
    "TaskStatusList.2": "NOTIFIED",
    "Timestamp": "2024-11-19T09:47:43Z",
    "Version": "2018-01-20",
}

CANCEL_EDGE_CASES = {
    "AccessKeyId": "testid",
    "Action": "CancelOTATaskByDevice",
    "DeviceName.1": "testDevice1",
    "DeviceName.2": "test Device*2~ü",
    "FirmwareId": "168",
    "Format": "JSON",
    "ProductKey": "k1nhvyl0001",
    "RegionId": "cn-shanghai",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "9e6189124f5a4716ad2de849467b0001",
    "SignatureType": "",
    "SignatureVersion": "1.0",
    "Timestamp": "2024-11-19T09:47:43Z",
    "Version": "2018-01-20",
}


def test_docs_example_get() -> None:
    """The platform docs' own GET example signs to its published signature."""
    assert sign("GET", DOCS_EXAMPLE, SECRET) == "Y9eWn4nF8QPh3c4zAFkM/k/u7eA="


def test_unfinished_tasks_post() -> None:
    """The POST vector of NOTES.md signs byte for byte."""
    assert sign("POST", UNFINISHED_TASKS, SECRET) == "hxDS4gS5mw17HYMi3NScqedfpr4="


def test_unfinished_tasks_get_differs_by_method() -> None:
    """The same parameters sent with GET sign to the GET vector: the method is signed."""
    assert sign("GET", UNFINISHED_TASKS, SECRET) == "3pC9txLgC4lGYdkBtN+dwSBq2JI="


def test_cancel_encoding_edge_cases() -> None:
    """Space, `*`, `~`, non-ASCII and an empty value encode as the platform does."""
    assert sign("POST", CANCEL_EDGE_CASES, SECRET) == "XiFVGO+WCSTvLSiCuH25bTTJ2fI="


def test_percent_encoding_rules() -> None:
    """Space is %20, `*` is %2A, `~` stays, and UTF-8 bytes are uppercase hex."""
    assert percent_encode("a b*c~d/ü") == "a%20b%2Ac~d%2F%C3%BC"


def test_names_sort_in_byte_order() -> None:
    """`DeviceName.10` sorts before `DeviceName.2`, and Signature itself is left out."""
    query = canonical_query({"DeviceName.2": "b", "DeviceName.10": "a", "Signature": "x"})
    assert query == "DeviceName.10=a&DeviceName.2=b"


def test_string_to_sign_shape() -> None:
    """The string to sign is METHOD&%2F&encoded-canonical-query."""
    assert string_to_sign("post", {"A": "1", "B": "x y"}) == "POST&%2F&A%3D1%26B%3Dx%2520y"


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda name: name != "Signature"),
        st.text(max_size=20),
        min_size=1,
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_signature_does_not_depend_on_parameter_order(
    params: dict[str, str], rng: random.Random
) -> None:
    """Any permutation of the same parameters gives the same signature."""
    pairs = list(params.items())
    rng.shuffle(pairs)
    assert sign("POST", pairs, SECRET) == sign("POST", params, SECRET)


@given(st.text(max_size=30))
def test_changing_a_value_changes_the_signature(value: str) -> None:
    """A one-character change to any value changes the signature."""
    base = dict(UNFINISHED_TASKS, ModuleName=value)
    changed = dict(UNFINISHED_TASKS, ModuleName=value + "x")
    assert sign("POST", base, SECRET) != sign("POST", changed, SECRET)


@pytest.mark.parametrize(
    ("method", "params", "signature"),
    [
        ("GET", DOCS_EXAMPLE, "Y9eWn4nF8QPh3c4zAFkM/k/u7eA="),
        ("POST", UNFINISHED_TASKS, "hxDS4gS5mw17HYMi3NScqedfpr4="),
        ("GET", UNFINISHED_TASKS, "3pC9txLgC4lGYdkBtN+dwSBq2JI="),
        ("POST", CANCEL_EDGE_CASES, "XiFVGO+WCSTvLSiCuH25bTTJ2fI="),
    ],
)
def test_signed_query_carries_the_known_signatures(
    method: str, params: dict[str, str], signature: str
) -> None:
    """The client's fast path sends every known-answer vector's signature, percent-encoded."""
    query = signed_query(method, params, SECRET)
    assert query == f"{canonical_query(params)}&Signature={percent_encode(signature)}"


@given(
    st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=12),
    st.sampled_from(["GET", "POST"]),
)
def test_signed_query_agrees_with_sign(params: dict[str, str], method: str) -> None:
    """For any parameters the fast path sends exactly what canonical_query and sign give."""
    expected = f"{canonical_query(params)}&Signature={percent_encode(sign(method, params, SECRET))}"
    assert signed_query(method, params, SECRET) == expected
