"""The platform's OTA RPC protocol: request parameters, error classes and the protocol's facts.

Pure (sans-I/O): values in, values out. The client sends what this module builds; what an
answer means (and whether to believe it) is `responses.py`'s business, using the error
classes here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final, Literal

from fleetaudit.credentials import KEY_ID_ENV, SECRET_ENV
from fleetaudit.errors import ApiError, AuthError, TransientError
from fleetaudit.models import Device
from fleetaudit.terms import Action, TaskStatus

API_VERSION: Final = "2018-01-20"

# Plain text, not the members: these name the keys of quota and statistics mappings, which
# the manifest and the progress log write as JSON objects.
ACTIONS: tuple[str, ...] = tuple(action.value for action in Action)
# The platform's default quota per action, in calls per second (QueryOTAFirmware has more).
DEFAULT_QUOTAS: Mapping[str, float] = {
    action: (20.0 if action == Action.QUERY_FIRMWARE else 10.0) for action in ACTIONS
}
# The largest page each listing action accepts.
MODULE_PAGE_SIZE: Final = 200
JOB_PAGE_SIZE: Final = 100
# The sweep's listings (SWEEP.md): firmware 100 a page, a firmware's jobs 200, a job's tasks 100.
FIRMWARE_PAGE_SIZE: Final = 100
FIRMWARE_JOB_PAGE_SIZE: Final = 200
TASK_PAGE_SIZE: Final = 100
# ListOTATaskByJob: CurrentPage x PageSize may not pass this, so one (job, status) listing
# shows at most this many tasks; beyond it, name the devices or ask per device.
TASK_WINDOW: Final = 100_000
# DeviceNames.N per ListOTATaskByJob call (Alibaba's limit; the platform's page gives none).
MAX_TASK_DEVICE_NAMES: Final = 50
# CancelOTATaskByDevice takes at most this many device names per call.
MAX_CANCEL_DEVICES: Final = 200
# The statuses CancelOTATaskByDevice cancels ("pending confirmation, pending push, or pushed"
# on its reference page): an IN_PROGRESS task is left upgrading, the call is a no-op for it.
CANCELLABLE_STATUSES: tuple[TaskStatus, ...] = (
    TaskStatus.CONFIRM,
    TaskStatus.QUEUED,
    TaskStatus.NOTIFIED,
)
# A listing promising more pages than this is not believed: 1000 pages of 100 is far
# beyond any real device's jobs or modules.
MAX_PAGES: Final = 1000
# Gateway messages and proxy bodies can be long; the errors table needs a hint, not a page.
MAX_MESSAGE_CHARS: Final = 500

ErrorClass = Literal["auth", "retryable", "final"]

_AUTH_CODES: Final = frozenset({"SignatureDoesNotMatch", "InvalidTimeStamp.Expired"})
# The platform's answers for a missing or unknown IotInstanceId (its public error-code
# page): every later call would get the same, so they abort the run like an auth error.
_INSTANCE_CODES: Final = frozenset(
    {"iot.system.InstanceNotFound", "iot.Sre.IotInstanceNotFound", "iot.common.InvalidTenant"}
)
_RETRYABLE_CODES: Final = frozenset(
    {"InternalError", "ServiceUnavailable", "iot.system.SystemException", "SignatureNonceUsed"}
)
_STRING_TO_SIGN_TAIL = re.compile(r"\s*server string to sign is.*", re.IGNORECASE | re.DOTALL)


# --- requests -------------------------------------------------------------------------


def format_timestamp(epoch_seconds: float) -> str:
    """The `Timestamp` common parameter: UTC `YYYY-MM-DDThh:mm:ssZ`."""
    return _format_second(int(epoch_seconds))


@lru_cache(maxsize=4)
def _format_second(second: int) -> str:
    # Every attempt needs a timestamp, and hundreds of them fall in the same second.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def common_params(
    action: str,
    access_key_id: str,
    *,
    nonce: str,
    timestamp: str,
    iot_instance_id: str | None = None,
) -> dict[str, str]:
    """Every common parameter but `Signature`; a fresh nonce and timestamp per attempt."""
    params = {
        "Action": action,
        "Version": API_VERSION,
        "Format": "JSON",
        "AccessKeyId": access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce,
        "Timestamp": timestamp,
    }
    if iot_instance_id:
        params["IotInstanceId"] = iot_instance_id
    return params


def device_params(device: Device) -> dict[str, str]:
    """`IotId` when the device has one (it wins on the server anyway), else the key pair."""
    if device.iot_id:
        return {"IotId": device.iot_id}
    return {"ProductKey": device.product_key, "DeviceName": device.device_name}


def flatten_list(name: str, values: Sequence[str]) -> dict[str, str]:
    """A list as the platform wants it: `Name.1`, `Name.2`, ... (1-based)."""
    return {f"{name}.{index}": value for index, value in enumerate(values, start=1)}


def module_versions_params(device: Device, page: int, page_size: int) -> dict[str, str]:
    """ListOTAModuleVersionsByDevice parameters for one page."""
    return {**device_params(device), "CurrentPage": str(page), "PageSize": str(page_size)}


def unfinished_tasks_params(
    device: Device, statuses: Sequence[str], module_name: str | None
) -> dict[str, str]:
    """ListOTAUnfinishedTaskByDevice parameters: every status in one call."""
    if not statuses:
        raise ValueError("at least one task status is needed")
    params = {**device_params(device), **flatten_list("TaskStatusList", statuses)}
    if module_name is not None:
        params["ModuleName"] = module_name
    return params


def firmware_params(firmware_id: str) -> dict[str, str]:
    """QueryOTAFirmware parameters."""
    return {"FirmwareId": firmware_id}


def jobs_params(
    product_key: str, device_name: str, firmware_id: str, page: int, page_size: int
) -> dict[str, str]:
    """ListOTAJobByDevice parameters for one page."""
    return {
        "ProductKey": product_key,
        "DeviceName": device_name,
        "FirmwareId": firmware_id,
        "CurrentPage": str(page),
        "PageSize": str(page_size),
    }


def firmware_list_params(product_key: str | None, page: int, page_size: int) -> dict[str, str]:
    """ListOTAFirmware parameters for one page (every firmware of the account without a key)."""
    params = {"CurrentPage": str(page), "PageSize": str(page_size)}
    if product_key is not None:
        params["ProductKey"] = product_key
    return params


def firmware_jobs_params(firmware_id: str, page: int, page_size: int) -> dict[str, str]:
    """ListOTAJobByFirmware parameters for one page."""
    return {"FirmwareId": firmware_id, "CurrentPage": str(page), "PageSize": str(page_size)}


def job_tasks_params(
    job_id: str,
    status: str | None,
    page: int,
    page_size: int,
    device_names: Sequence[str] = (),
) -> dict[str, str]:
    """ListOTATaskByJob parameters for one page: one status (None: all), some devices."""
    if page * page_size > TASK_WINDOW:
        raise ValueError(f"CurrentPage x PageSize may not pass {TASK_WINDOW}")
    if len(device_names) > MAX_TASK_DEVICE_NAMES:
        raise ValueError(f"at most {MAX_TASK_DEVICE_NAMES} device names per call")
    params = {"JobId": job_id, "CurrentPage": str(page), "PageSize": str(page_size)}
    if status is not None:
        params["TaskStatus"] = status
    params.update(flatten_list("DeviceNames", device_names))
    return params


def cancel_params(
    product_key: str, firmware_id: str, device_names: Sequence[str], job_id: str | None
) -> dict[str, str]:
    """CancelOTATaskByDevice parameters; names must be unique and at most 200."""
    unique = list(dict.fromkeys(device_names))
    if not unique:
        raise ValueError("at least one device name is needed")
    if len(unique) > MAX_CANCEL_DEVICES:
        raise ValueError(f"at most {MAX_CANCEL_DEVICES} device names per call")
    params = {
        "ProductKey": product_key,
        "FirmwareId": firmware_id,
        **flatten_list("DeviceName", unique),
    }
    if job_id is not None:
        params["JobId"] = job_id
    return params


# --- errors ---------------------------------------------------------------------------


def classify_error(code: str, http_status: int | None) -> ErrorClass:
    """Whether an error code aborts the run, is worth retrying, or is final for this call."""
    if (
        code in _AUTH_CODES
        or code in _INSTANCE_CODES
        or code.startswith("InvalidAccessKeyId")
        or (code.startswith("iot.common.") and code.endswith("PermissionDeny"))
    ):
        return "auth"
    if code.startswith("Throttling") or code in _RETRYABLE_CODES:
        return "retryable"
    if code.startswith("iot."):
        # The platform's own codes are final unless listed above: an unknown one (such as
        # the undocumented firmware-not-found code) will not change on a retry.
        return "final"
    if http_status is not None and (http_status >= 500 or http_status == 429):
        return "retryable"
    return "final"


def redact_message(message: str) -> str:
    """Cut the `server string to sign is:` tail (it echoes the key id) and long bodies."""
    cut = _STRING_TO_SIGN_TAIL.sub("", message).strip()
    if len(cut) > MAX_MESSAGE_CHARS:
        return cut[:MAX_MESSAGE_CHARS] + "..."
    return cut


def error_for(
    code: str,
    message: str,
    *,
    http_status: int | None,
    request_id: str | None,
    retry_after: float | None = None,
) -> AuthError | ApiError:
    """The exception for an error answer: AuthError, TransientError, or a final ApiError."""
    message = redact_message(message)
    kind = classify_error(code, http_status)
    if kind == "auth":
        return AuthError(code, f"{message} ({_auth_hint(code)})".lstrip())
    error_type = TransientError if kind == "retryable" else ApiError
    return error_type(
        code, message, http_status=http_status, request_id=request_id, retry_after=retry_after
    )


def _auth_hint(code: str) -> str:
    """What an operator should check for an authentication or permission error."""
    if code == "InvalidTimeStamp.Expired":
        return "check the clock: it is more than 15 minutes off"
    if code.startswith("InvalidAccessKeyId"):
        return f"check {KEY_ID_ENV}: the platform does not accept this key"
    if code == "SignatureDoesNotMatch":
        return f"check {SECRET_ENV}: it does not match the key id"
    if code in _INSTANCE_CODES:
        return (
            "check iot_instance_id (--iot-instance-id): this account's instance needs its id, "
            "and this one is missing or not the account's"
        )
    return "the key lacks permission for this action: check its RAM policy"


def parse_ratelimit_header(value: str) -> dict[str, str]:
    """`Limit:10,Remain:0,TimeLeft:120,Reset:...` -> {"Limit": "10", ...}; junk ignored."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, field_value = part.partition(":")
        if sep and name.strip():
            fields[name.strip()] = field_value.strip()
    return fields


def retry_after_seconds(retry_after: str | None, ratelimit: str | None) -> float | None:
    """Seconds the server asked us to wait: `x-acs-retry-after` or `TimeLeft`, both in ms."""
    candidates = [retry_after]
    if ratelimit:
        candidates.append(parse_ratelimit_header(ratelimit).get("TimeLeft"))
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            millis = float(candidate)
        except ValueError:
            continue
        if millis >= 0:
            return millis / 1000.0
    return None
