"""The platform's OTA RPC protocol: request parameters, response parsing and error classes.

Pure (sans-I/O): values in, values out. The client sends what this module builds and hands
back what it received; this module decides what the answer means. Responses come in two
casings (lowerCamel from the reference pages, Pascal from the Alibaba form) and both are
read; unknown fields are ignored, unknown enum strings kept, ids stay strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import orjson

from fleetaudit.credentials import KEY_ID_ENV, SECRET_ENV
from fleetaudit.errors import ApiError, AuthError, TransientError
from fleetaudit.models import Device, Firmware, Job, ModuleVersion, Task
from fleetaudit.terms import Action

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
# CancelOTATaskByDevice takes at most this many device names per call.
MAX_CANCEL_DEVICES: Final = 200
# A server that keeps saying "more" must not keep us forever: 1000 pages of 100 is far
# beyond any real device's jobs or modules.
MAX_PAGES: Final = 1000
# Gateway messages and proxy bodies can be long; the errors table needs a hint, not a page.
MAX_MESSAGE_CHARS: Final = 500

ErrorClass = Literal["auth", "retryable", "final"]

_AUTH_CODES: Final = frozenset({"SignatureDoesNotMatch", "InvalidTimeStamp.Expired"})
_RETRYABLE_CODES: Final = frozenset(
    {"InternalError", "ServiceUnavailable", "iot.system.SystemException", "SignatureNonceUsed"}
)
_STRING_TO_SIGN_TAIL = re.compile(r"\s*server string to sign is.*", re.IGNORECASE | re.DOTALL)
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})\s*T\s*(\d{2}:\d{2}:\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


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


# --- responses ------------------------------------------------------------------------


def field(obj: Mapping[str, Any], name: str) -> Any:
    """A field by its Pascal name, read in Pascal or lowerCamel casing (None when absent)."""
    value = obj.get(name)
    if value is None:
        value = obj.get(name[:1].lower() + name[1:])
    return value


def _text(obj: Mapping[str, Any], name: str) -> str | None:
    value = field(obj, name)
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _int(obj: Mapping[str, Any], name: str) -> int | None:
    value = field(obj, name)
    if isinstance(value, bool):
        return None
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def parse_utc_ms(value: object) -> int | None:
    """`2024-09-11T03:40:02.734Z` or `2024-11-11 T11:11:11.000Z` -> UTC epoch ms."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)  # some gateways answer epoch milliseconds already
    match = _TIME.match(str(value).strip())
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}{zone}")
    except ValueError:
        return None
    millis = round(float(fraction) * 1000) if fraction else 0
    return int(parsed.timestamp()) * 1000 + millis


def strip_query(url: str | None) -> str | None:
    """A presigned URL without its query string or fragment (they are the secret part)."""
    if not url:
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def decode_response(
    http_status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
) -> dict[str, Any]:
    """The envelope of a successful answer, or raise the error it stands for.

    Raises AuthError (abort the run), TransientError (retry) or ApiError (final).
    """
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise _non_json_error(http_status, body, retry_after)
    code = _text(document, "Code") or ""
    request_id = _text(document, "RequestId")
    success = field(document, "Success")
    failed = http_status >= 400 or success is False or (success is None and code != "")
    if not failed:
        return document
    message = _text(document, "ErrorMessage") or _text(document, "Message") or ""
    if not code:
        code = f"HTTP{http_status}" if http_status >= 400 else "UnknownError"
    raise error_for(
        code, message, http_status=http_status, request_id=request_id, retry_after=retry_after
    )


def _non_json_error(http_status: int, body: bytes, retry_after: float | None) -> ApiError:
    """A body that is not a JSON object: a proxy page on an error, else a broken answer."""
    text = redact_message(body.decode("utf-8", errors="replace"))
    if http_status == 429:
        return TransientError("Throttling", text, http_status=429, retry_after=retry_after)
    if http_status >= 400:
        error = error_for(f"HTTP{http_status}", text, http_status=http_status, request_id=None)
        assert isinstance(error, ApiError)  # HTTPnnn codes are never authentication codes
        return error
    return TransientError("MalformedResponse", text or "empty body", http_status=http_status)


def request_id_of(envelope: Mapping[str, Any]) -> str:
    """The request id of a successful answer ("" when the server left it out)."""
    return _text(envelope, "RequestId") or ""


def list_items(envelope: Mapping[str, Any], list_name: str) -> list[Mapping[str, Any]]:
    """`Data.<list_name>[]` in either casing; missing or empty Data is an empty list."""
    data = field(envelope, "Data")
    if isinstance(data, list):
        items: Any = data  # some gateways put the list straight under Data
    elif isinstance(data, dict):
        items = field(data, list_name)
    else:
        items = None
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict)]


def has_more_pages(
    envelope: Mapping[str, Any], page: int, page_size: int, items_so_far: int, page_items: int
) -> bool:
    """Whether another page should be read after `page` (guarded against endless servers)."""
    if page_items == 0:
        return False
    page_count = _int(envelope, "PageCount")
    if page_count is not None and page >= page_count:
        return False
    total = _int(envelope, "Total")
    if total is not None and items_so_far >= total:
        return False
    if page_count is None and total is None and page_items < page_size:
        return False
    if page >= MAX_PAGES:
        raise ApiError("PagingRunaway", f"the server still had more after {MAX_PAGES} pages")
    return True


def parse_module(item: Mapping[str, Any], device: Device) -> ModuleVersion:
    """One SimpleOTAModuleInfo; the device fills in what the answer leaves out."""
    return ModuleVersion(
        product_key=_text(item, "ProductKey") or device.product_key,
        device_name=_text(item, "DeviceName") or device.device_name,
        iot_id=_text(item, "IotId") or device.iot_id,
        # A report without a module name is the whole-device firmware.
        module_name=_text(item, "ModuleName") or "default",
        module_version=_text(item, "ModuleVersion") or "",
    )


def parse_task(item: Mapping[str, Any], device: Device) -> Task:
    """One SimpleOTATaskInfo; the device fills in what the answer leaves out."""
    return Task(
        task_id=_text(item, "TaskId") or "",
        job_id=_text(item, "JobId"),
        firmware_id=_text(item, "FirmwareId"),
        product_key=_text(item, "ProductKey") or device.product_key,
        product_name=_text(item, "ProductName"),
        device_name=_text(item, "DeviceName") or device.device_name,
        iot_id=_text(item, "IotId") or device.iot_id,
        module_name=_text(item, "ModuleName") or "default",
        src_version=_text(item, "SrcVersion"),
        dest_version=_text(item, "DestVersion"),
        task_status=_text(item, "TaskStatus") or "",
        utc_create=parse_utc_ms(field(item, "UtcCreate")),
        utc_modified=parse_utc_ms(field(item, "UtcModified")),
    )


def parse_firmware(envelope: Mapping[str, Any], firmware_id: str) -> Firmware:
    """FirmwareInfo of a QueryOTAFirmware answer; the URL loses its presigned query."""
    info = field(envelope, "FirmwareInfo")
    if not isinstance(info, dict):
        info = {}
    return Firmware(
        firmware_id=_text(info, "FirmwareId") or firmware_id,
        firmware_name=_text(info, "FirmwareName"),
        product_key=_text(info, "ProductKey"),
        product_name=_text(info, "ProductName"),
        module_name=_text(info, "ModuleName"),
        src_version=_text(info, "SrcVersion"),
        dest_version=_text(info, "DestVersion"),
        status=_int(info, "Status"),
        type=_int(info, "Type"),
        sign_method=_text(info, "SignMethod"),
        firmware_sign=_text(info, "FirmwareSign"),
        firmware_size=_int(info, "FirmwareSize"),
        verify_progress=_int(info, "VerifyProgress"),
        firmware_url=strip_query(_text(info, "FirmwareUrl")),
        utc_create=parse_utc_ms(field(info, "UtcCreate")),
        utc_modified=parse_utc_ms(field(info, "UtcModified")),
    )


def parse_job(item: Mapping[str, Any]) -> Job:
    """One SimpleOTAJobInfo."""
    return Job(
        job_id=_text(item, "JobId") or "",
        firmware_id=_text(item, "FirmwareId"),
        product_key=_text(item, "ProductKey"),
        job_status=_text(item, "JobStatus"),
        job_type=_text(item, "JobType"),
        target_selection=_text(item, "TargetSelection"),
        utc_create=parse_utc_ms(field(item, "UtcCreate")),
        utc_modified=parse_utc_ms(field(item, "UtcModified")),
    )
