"""The emulator's HTTP app: the gateway checks, quotas, faults and the OTA actions.

`create_app(fleet, credentials=...)` returns an `aiohttp.web.Application` serving `/` (GET
and POST, parameters in the query string and/or a form body) exactly as NOTES.md says. The
order of checks per request is the gateway's: common parameters, key id, timestamp,
signature, nonce, action, quota; then injected faults; then the action itself.

Counters live in `app[STATS_KEY]` (an `EmulatorStats`), the fleet in `app[FLEET_KEY]`.

Error codes the emulator chooses where the platform's are not documented: a missing
common or action parameter is a gateway 400 `Missing<Param>` (neither `IotId` nor
`ProductKey`+`DeviceName`: `MissingIotId`); a bad `Version` is 400 `InvalidVersion`, a bad
`Format` 400 `InvalidParameter.Format`, a bad signature method or version 400
`InvalidSignatureMethod` / `InvalidSignatureVersion`, an unparsable timestamp 400
`InvalidTimeStamp.Format`; an unknown firmware is business `iot.ota.NotExistedFirmware`,
an unknown job `iot.ota.NotExistedJob`; a task page past the window
`iot.common.InvalidPageParams`;
a bad task status, a repeated `DeviceName.N` or more than 200 of them are business
`iot.system.IllegalRequest`. Cancelling for unknown devices or tasks is a no-op success.
An emulator given an `iot_instance_id` answers every call that lacks it or names another
with business `iot.system.InstanceNotFound` (the platform's documented code for an unknown
instance id; what it answers when the id is missing is not documented).
"""

from __future__ import annotations

import asyncio
import calendar
import random
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from fleetaudit.api.signing import sign, signatures_match, string_to_sign
from fleetaudit.emulator import actions, facts
from fleetaudit.emulator.actions import GatewayError
from fleetaudit.emulator.faults import (
    GARBAGE_BODY,
    FaultPlan,
    pick_error_status,
    pick_fault,
    pick_latency,
)
from fleetaudit.emulator.fleet import Fleet
from fleetaudit.emulator.quota import QuotaBook

Casing = Literal["tuya", "alibaba"]
DEFAULT_CANCELLABLE = frozenset({"CONFIRM", "QUEUED", "NOTIFIED"})
_COMMON = (
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
)
_SKEW_S = 15 * 60
_NONCE_CAP = 1_000_000
_JSON = "application/json"


@dataclass
class EmulatorStats:
    """What the emulator saw; tests read it from `app[STATS_KEY]`.

    - `served`: per action, requests the action answered (success or business error);
    - `throttled`: per action, requests refused with `Throttling.User`;
    - `faults`: per fault kind, requests answered by an injected fault;
    - `rejected`: per gateway error code, requests refused before reaching an action;
    - `cancel_calls`: CancelOTATaskByDevice requests answered; `cancelled_tasks`: tasks
      they moved to CANCELED.
    """

    served: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    cancel_calls: int = 0
    cancelled_tasks: int = 0


STATS_KEY = web.AppKey("fleetaudit_emulator_stats", EmulatorStats)
FLEET_KEY = web.AppKey("fleetaudit_emulator_fleet", Fleet)


class _Nonces:
    """Nonces seen per key id, each kept until its request's timestamp could no longer pass."""

    __slots__ = ("_expiry", "_order")

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._order: deque[str] = deque()

    def add(self, key: str, now: float, expires: float) -> bool:
        """Remember `key` until `expires`; False if it was already remembered."""
        self._forget(now)
        if key in self._expiry:
            return False
        self._expiry[key] = expires
        self._order.append(key)
        return True

    def _forget(self, now: float) -> None:
        # Insertion order approximates expiry order; a rare late expiry only keeps one
        # entry a little longer. The cap bounds memory whatever the clock does.
        while self._order and (len(self._order) > _NONCE_CAP or self._expiry[self._order[0]] < now):
            del self._expiry[self._order.popleft()]


def create_app(
    fleet: Fleet,
    *,
    credentials: Mapping[str, str],
    faults: FaultPlan = FaultPlan(),  # noqa: B008 - immutable value
    quotas: Mapping[str, float] | None = None,
    throttle_status: int = 400,
    casing: Casing = "tuya",
    cancellable: frozenset[str] = DEFAULT_CANCELLABLE,
    clock: Callable[[], float] = time.time,
    iot_instance_id: str | None = None,
    task_window: int = facts.TASK_WINDOW,
    accounts: Mapping[str, str] | None = None,
) -> web.Application:
    """An emulator of the OTA API over `fleet`; `credentials` maps key id -> secret.

    `quotas` overrides the per-action rate (calls/s; <= 0 or inf: unlimited; defaults
    QueryOTAFirmware 20, the rest 10); throttled calls get HTTP `throttle_status`.
    `accounts` maps key ids (RAM users) to the account whose quota they share; a key id
    not in it is an account of its own.
    `iot_instance_id`: the instance's id, then required as `IotInstanceId` on every call.
    `task_window`: how deep ListOTATaskByJob pages (CurrentPage x PageSize) may go.
    """
    emulator = _Emulator(
        fleet,
        dict(credentials),
        faults,
        QuotaBook(quotas, clock, accounts),
        throttle_status,
        casing,
        cancellable,
        clock,
        iot_instance_id,
        task_window,
    )
    app = web.Application()
    app[STATS_KEY] = emulator.stats
    app[FLEET_KEY] = fleet
    app.router.add_route("GET", "/", emulator.handle)
    app.router.add_route("POST", "/", emulator.handle)
    return app


class _Emulator:
    """Per-app configuration and state behind the one route."""

    def __init__(
        self,
        fleet: Fleet,
        credentials: dict[str, str],
        faults: FaultPlan,
        quotas: QuotaBook,
        throttle_status: int,
        casing: Casing,
        cancellable: frozenset[str],
        clock: Callable[[], float],
        iot_instance_id: str | None = None,
        task_window: int = facts.TASK_WINDOW,
    ) -> None:
        self.task_window = task_window
        self.fleet = fleet
        self.credentials = credentials
        self.faults = faults
        self.quotas = quotas
        self.throttle_status = throttle_status
        self.casing = casing
        self.cancellable = cancellable
        self.clock = clock
        self.iot_instance_id = iot_instance_id
        self.stats = EmulatorStats()
        self.rng = random.Random(faults.seed)
        self.nonces = _Nonces()
        self._last_timestamp: tuple[str, float] = ("", 0.0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one API call."""
        request_id = str(uuid.uuid4()).upper()
        params: dict[str, str] = dict(request.query)
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            params.update((k, v) for k, v in (await request.post()).items() if isinstance(v, str))
        try:
            action = self._authenticate(request.method, params)
            throttled = self.quotas.take(params["AccessKeyId"], action)
            if throttled is not None:
                self.stats.throttled[action] += 1
                return self._gateway_response(
                    request,
                    request_id,
                    GatewayError(
                        self.throttle_status,
                        "Throttling.User",
                        "Request was denied due to user flow control.",
                    ),
                    {"x-ratelimit-user-api": throttled.header()},
                )
            return await self._answer(request, request_id, action, params)
        except GatewayError as error:
            self.stats.rejected[error.code] += 1
            return self._gateway_response(request, request_id, error)

    def _authenticate(self, method: str, params: dict[str, str]) -> str:
        """The gateway's checks, in its order; returns the action or raises GatewayError."""
        for name in _COMMON:
            if not params.get(name):
                raise GatewayError(400, f"Missing{name}", f"{name} is mandatory for this action.")
        if params["Format"].upper() != "JSON":
            raise GatewayError(400, "InvalidParameter.Format", "Format must be JSON.")
        if params["Version"] != "2018-01-20":
            raise GatewayError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise GatewayError(
                400, "InvalidSignatureMethod", "Specified signature method is not valid."
            )
        if params["SignatureVersion"] != "1.0":
            raise GatewayError(
                400, "InvalidSignatureVersion", "Specified signature version is not valid."
            )
        secret = self.credentials.get(params["AccessKeyId"])
        if secret is None:
            raise GatewayError(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        stamp = self._parse_timestamp(params["Timestamp"])
        now = self.clock()
        if abs(now - stamp) > _SKEW_S:
            raise GatewayError(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        expected = sign(method, params, secret)
        if not signatures_match(expected, params["Signature"]):
            raise GatewayError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. "
                f"server string to sign is:{string_to_sign(method, params)}",
            )
        nonce_key = f"{params['AccessKeyId']}\n{params['SignatureNonce']}"
        if not self.nonces.add(nonce_key, now, stamp + _SKEW_S + 1):
            raise GatewayError(
                400, "SignatureNonceUsed", "Specified signature nonce was used already."
            )
        action = params["Action"]
        if action not in actions.HANDLERS:
            raise GatewayError(
                404,
                "InvalidApi.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        return action

    def _parse_timestamp(self, text: str) -> float:
        # Most requests in a burst share a timestamp: parse each distinct one once.
        if self._last_timestamp[0] == text:
            return self._last_timestamp[1]
        try:
            stamp = float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            raise GatewayError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ) from None
        self._last_timestamp = (text, stamp)
        return stamp

    async def _answer(
        self, request: web.Request, request_id: str, action: str, params: dict[str, str]
    ) -> web.StreamResponse:
        """Injected latency and faults, else the action's answer."""
        plan = self.faults
        fault = pick_fault(plan, self.rng)
        delay = pick_latency(plan, self.rng)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None:
            self.stats.faults[fault] += 1
        if fault == "drop":
            return _drop(request)
        if fault == "garbage":
            return web.Response(status=502, body=GARBAGE_BODY, content_type="text/html")
        if fault == "error":
            status, code = pick_error_status(plan, self.rng)
            error = GatewayError(
                status, code, "The request processing has failed due to some unknown error."
            )
            return self._gateway_response(request, request_id, error)
        if fault == "system_error":
            body = actions.business_error(
                request_id, "iot.system.SystemException", "System Exception"
            )
        else:
            body = self._run_action(request_id, action, params)
        data = orjson.dumps(self._cased(body))
        if fault == "truncated":
            data = data[: len(data) // 2]
        return web.Response(body=data, content_type=_JSON)

    def _run_action(self, request_id: str, action: str, params: dict[str, str]) -> dict[str, Any]:
        if self.iot_instance_id is not None and params.get("IotInstanceId") != self.iot_instance_id:
            self.stats.served[action] += 1
            return actions.business_error(
                request_id, "iot.system.InstanceNotFound", "The instance ID does not exist."
            )
        listing = self.faults.failing_listings
        if listing and action in (facts.LIST_JOBS_BY_FIRMWARE, facts.LIST_TASKS_BY_JOB):
            code = listing.get(params.get("JobId") or params.get("FirmwareId") or "")
            if code is not None:
                self.stats.served[action] += 1
                return actions.business_error(request_id, code, "Injected failure for this id.")
        failing = self.faults.failing_devices
        if failing:
            code = _failing_code(self.fleet, failing, params)
            if code is not None:
                self.stats.served[action] += 1
                return actions.business_error(request_id, code, "Injected failure for this device.")
        context = actions.Context(
            self.fleet,
            self.cancellable,
            int(self.clock() * 1000),
            job_listing_skew=self.faults.job_listing_skew,
            task_window=self.task_window,
        )
        body = actions.run(action, context, request_id, params)
        self.stats.served[action] += 1
        if action == facts.CANCEL_TASKS:
            self.stats.cancel_calls += 1
            self.stats.cancelled_tasks += context.cancelled
        return body

    def _cased(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.casing == "tuya":
            return body
        if body.get("code") == "":
            body = {k: v for k, v in body.items() if k != "code"}
        cased: dict[str, Any] = _pascal(body)
        return cased

    def _gateway_response(
        self,
        request: web.Request,
        request_id: str,
        error: GatewayError,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        body = {
            "RequestId": request_id,
            "HostId": request.host,
            "Code": error.code,
            "Message": error.message,
            "Recommend": f"https://api.example.com/troubleshoot?q={error.code}",
        }
        return web.Response(
            status=error.status, body=orjson.dumps(body), content_type=_JSON, headers=headers
        )


def _failing_code(
    fleet: Fleet, failing: Mapping[str, str], params: Mapping[str, str]
) -> str | None:
    """The injected error code for the first device of the request listed in `failing`."""
    names = [v for k, v in params.items() if k == "DeviceName" or k.startswith("DeviceName.")]
    iot_id = params.get("IotId")
    if iot_id:
        device = fleet.device_by_iot_id(iot_id)
        if device is not None:
            names.insert(0, device.device_name)
    return next((failing[n] for n in names if n in failing), None)


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering, like a proxy that gave up."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # nothing left to answer on; end the handler quietly


_FIRST = re.compile(r"^[a-z]")


def _pascal(value: Any) -> Any:
    """The Alibaba casing of a lowerCamel body: every key's first letter upper-cased."""
    if isinstance(value, dict):
        return {_FIRST.sub(lambda m: m.group().upper(), k): _pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pascal(v) for v in value]
    return value
