"""What the platform's answers mean: the envelope, every item and every page, checked once.

Pure (sans-I/O). This is the one place that distrusts the platform: an answer is a success
only when its envelope carries a real boolean `Success: true`; every item must be an object
with its required keys, about the device (or firmware) asked about; the pages of a listing
must keep to what the first one promised and never repeat an item. Anything else raises a
`TransientError` coded `MalformedResponse` (retried like a 5xx, then an error row), so
nothing downstream checks again. Both casings are read (lowerCamel from the reference
pages, Pascal from the Alibaba form); unknown fields are ignored, unknown enum strings
kept, ids stay strings. A missing or empty `Data` or list is an empty list (NOTES.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson

from fleetaudit.api.protocol import MAX_PAGES, error_for, redact_message
from fleetaudit.errors import ApiError, TransientError
from fleetaudit.models import Device, Firmware, Job, ModuleVersion, Task

MALFORMED: Final = "MalformedResponse"
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})\s*T\s*(\d{2}:\d{2}:\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
T = TypeVar("T")
Item = Mapping[str, Any]


class WindowExceeded(Exception):
    """A ListOTATaskByJob listing holds more tasks than its 100,000-row window can show.

    Not an error of the platform and not retried: the caller covers those devices another
    way (SWEEP.md). `total` is what the first page promised.
    """

    def __init__(self, total: int, window: int) -> None:
        super().__init__(f"{total} tasks, more than the {window}-row window")
        self.total = total
        self.window = window


def malformed(problem: str, request_id: str | None = None) -> TransientError:
    """The error for an answer that does not prove what it claims (retried, then a row)."""
    return TransientError(MALFORMED, problem, request_id=request_id)


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


_URL_QUERY = re.compile(r"(https?://[^\s?#]+)[?#][^\s]*")


def strip_url_queries(text: str | None) -> str | None:
    """Free text from the platform with every URL's query string and fragment cut (a
    task's description may quote a presigned download link)."""
    return _URL_QUERY.sub(r"\1", text) if text else text


# --- the envelope ---------------------------------------------------------------------


def decode_response(
    http_status: int, body: bytes, *, retry_after: float | None = None
) -> dict[str, Any]:
    """The envelope of a successful answer, or raise the error it stands for.

    Raises AuthError (abort the run), TransientError (retry: also an envelope whose
    `Success` is not a boolean) or ApiError (final).
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
    if http_status < 400 and success is True:
        return document
    if http_status < 400 and success is not False:
        # `{}` or `"Success": "false"` proves nothing: believing it made unknown devices ok.
        shown = "no Success" if success is None else f"Success {success!r} (not a boolean)"
        raise malformed(f"an answer with {shown}" + (f", Code {code}" if code else ""), request_id)
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
    return TransientError(MALFORMED, text or "empty body", http_status=http_status)


def request_id_of(envelope: Mapping[str, Any]) -> str:
    """The request id of a successful answer ("" when the server left it out)."""
    return _text(envelope, "RequestId") or ""


# --- items ----------------------------------------------------------------------------


def list_items(envelope: Mapping[str, Any], list_name: str) -> list[Item]:
    """`Data.<list_name>[]` in either casing (`Outer.<name>` for a list under another
    object); a missing or empty Data or list: no items."""
    request_id = request_id_of(envelope)
    outer, _, inner = list_name.rpartition(".")
    list_name = inner
    data = field(envelope, outer or "Data")
    if data is None or data == "":
        return []
    if isinstance(data, list):
        listed: Any = data  # some gateways put the list straight under Data
    elif isinstance(data, dict):
        listed = field(data, list_name)
        if listed is None:
            return []
    else:
        raise malformed(f"{outer or 'Data'} is a {type(data).__name__}, not an object", request_id)
    if not isinstance(listed, list):
        raise malformed(f"{list_name} is a {type(listed).__name__}, not a list", request_id)
    for index, item in enumerate(listed, start=1):
        if not isinstance(item, dict):
            kind = type(item).__name__
            raise malformed(f"item {index} of {list_name} is a {kind}, not an object", request_id)
    return listed


def _required(item: Item, name: str, where: str, *, empty: bool = False) -> str:
    """A key the item cannot do without, as text."""
    value = field(item, name)
    if value is None or isinstance(value, bool | dict | list) or (value == "" and not empty):
        raise malformed(f"{where} has no {name}")
    return str(value)


def _about(item: Item, expected: Mapping[str, str | None], where: str) -> None:
    """The item names what was asked about wherever it names anything."""
    for name, wanted in expected.items():
        got = _text(item, name)
        if got and wanted and got != wanted:
            raise malformed(f"{where} is about {name} {got!r}, not {wanted!r}")


def _device_keys(device: Device) -> dict[str, str | None]:
    return {
        "ProductKey": device.product_key,
        "DeviceName": device.device_name,
        "IotId": device.iot_id,
    }


def parse_module(item: Item, device: Device, where: str = "a module") -> ModuleVersion:
    """One SimpleOTAModuleInfo of `device` (a module without a name is `default`)."""
    _about(item, _device_keys(device), where)
    return ModuleVersion(
        product_key=device.product_key,
        device_name=device.device_name,
        iot_id=_text(item, "IotId") or device.iot_id,
        module_name=_required(item, "ModuleName", where, empty=True) or "default",
        module_version=_required(item, "ModuleVersion", where),
    )


def parse_task(item: Item, device: Device, where: str = "a task") -> Task:
    """One SimpleOTATaskInfo of `device`; the device fills in what the answer leaves out."""
    _about(item, _device_keys(device), where)
    return Task(
        task_id=_required(item, "TaskId", where),
        job_id=_text(item, "JobId"),
        firmware_id=_text(item, "FirmwareId"),
        product_key=_text(item, "ProductKey") or device.product_key,
        product_name=_text(item, "ProductName"),
        device_name=_text(item, "DeviceName") or device.device_name,
        iot_id=_text(item, "IotId") or device.iot_id,
        module_name=_text(item, "ModuleName") or "default",
        src_version=_text(item, "SrcVersion"),
        dest_version=_text(item, "DestVersion"),
        task_status=_required(item, "TaskStatus", where),
        utc_create=parse_utc_ms(field(item, "UtcCreate")),
        utc_modified=parse_utc_ms(field(item, "UtcModified")),
    )


def parse_tasks(envelope: Mapping[str, Any], device: Device) -> list[Task]:
    """Every task of a ListOTAUnfinishedTaskByDevice answer (unpaged), each id once."""
    try:
        tasks = [
            parse_task(item, device, f"task {index}")
            for index, item in enumerate(list_items(envelope, "SimpleOTATaskInfo"), start=1)
        ]
        _unique([task.task_id for task in tasks], "task", "the answer")
    except TransientError as error:
        raise malformed(error.message, request_id_of(envelope)) from None
    return tasks


def parse_job(item: Item, product_key: str | None = None, firmware_id: str | None = None) -> Job:
    """One SimpleOTAJobInfo (of `product_key` and `firmware_id` when they are given)."""
    _about(item, {"ProductKey": product_key, "FirmwareId": firmware_id}, "a job")
    return Job(
        job_id=_required(item, "JobId", "a job"),
        firmware_id=_text(item, "FirmwareId"),
        product_key=_text(item, "ProductKey"),
        job_status=_text(item, "JobStatus"),
        job_type=_text(item, "JobType"),
        target_selection=_text(item, "TargetSelection"),
        utc_create=parse_utc_ms(field(item, "UtcCreate")),
        utc_modified=parse_utc_ms(field(item, "UtcModified")),
    )


def parse_firmware(envelope: Mapping[str, Any], firmware_id: str) -> Firmware:
    """FirmwareInfo of a QueryOTAFirmware answer; the URL loses its presigned query."""
    info = field(envelope, "FirmwareInfo")
    request_id = request_id_of(envelope)
    if not isinstance(info, dict):
        raise malformed("the answer has no FirmwareInfo object", request_id)
    try:
        _about(info, {"FirmwareId": firmware_id}, "FirmwareInfo")
    except TransientError as error:
        raise malformed(error.message, request_id) from None
    return Firmware(
        firmware_id=firmware_id,
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


def _unique(keys: list[str], what: str, where: str) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise malformed(f"{where} lists {what} {key!r} twice")
        seen.add(key)


# --- pages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, checked against the pages before it but not yet taken in."""

    items: list[T]
    keys: list[str]
    promise: tuple[int | None, int | None]  # (Total, PageCount) as the page says


class Listing(Generic[T]):
    """The pages of one paged listing: what the first promised, and every item key so far.

    `read(envelope)` checks the answer for page `page` and raises MalformedResponse (so a
    retry of that page starts from the same state); `accept(page)` takes it in and says
    whether another page is due. Paging stops at what the first page promised.
    """

    def __init__(
        self,
        list_name: str,
        page_size: int,
        what: str,
        parse: Callable[[Item, str], tuple[str, T]],
        *,
        window: int | None = None,
    ) -> None:
        self.page = 1
        self.total: int | None = None  # what the first page promised, once read
        self._window = window
        self.items: list[T] = []
        self._list_name = list_name
        self._page_size = page_size
        self._what = what
        self._parse = parse
        self._keys: set[str] = set()
        self._promise: tuple[int | None, int | None] | None = None

    def read(self, envelope: Mapping[str, Any]) -> Page[T]:
        """The answer for page `self.page`, checked; raises MalformedResponse."""
        try:
            return self._read(envelope)
        except TransientError as error:
            raise malformed(error.message, request_id_of(envelope)) from None

    def _read(self, envelope: Mapping[str, Any]) -> Page[T]:
        page, size = self.page, self._page_size
        raw = list_items(envelope, self._list_name)
        total, page_count = _count(envelope, "Total"), _count(envelope, "PageCount")
        if len(raw) > size:
            raise malformed(f"page {page} has {len(raw)} items, more than the {size} asked for")
        if raw and total is None and page_count is None:
            raise malformed(f"page {page} has neither Total nor PageCount")
        # At the window too: a platform that caps Total there may hold more than it says.
        if self._window is not None and total is not None and total >= self._window:
            raise WindowExceeded(total, self._window)
        if (page_count or 0) > MAX_PAGES or (total or 0) > MAX_PAGES * size:
            raise malformed(f"page {page} promises more than {MAX_PAGES} pages")
        if self._promise is not None and (total, page_count) != self._promise:
            raise malformed(f"page {page} changes Total/PageCount from {self._promise}")
        parsed = [
            self._parse(item, f"{self._what} {index} of page {page}")
            for index, item in enumerate(raw, start=1)
        ]
        keys = [key for key, _ in parsed]
        if keys and all(key in self._keys for key in keys):
            raise malformed(f"page {page} repeats an earlier page")
        _unique(keys, self._what, f"page {page}")
        if (again := next((key for key in keys if key in self._keys), None)) is not None:
            raise malformed(f"page {page} repeats {self._what} {again!r} of an earlier page")
        seen = len(self.items) + len(raw)
        if total is not None and seen > total:
            raise malformed(f"{seen} items by page {page}, more than Total {total}")
        more_due = (total is not None and seen < total) or (
            total is None and page_count is not None and page < page_count
        )
        if more_due and len(raw) < size:
            raise malformed(f"page {page} has {len(raw)} items of {size} before the last page")
        return Page([value for _, value in parsed], keys, (total, page_count))

    def accept(self, page: Page[T]) -> bool:
        """Take a page read by `read`; whether another page is due."""
        self.items.extend(page.items)
        self._keys.update(page.keys)
        self._promise = page.promise
        total, page_count = page.promise
        self.total = total
        more = bool(page.items)
        if page_count is not None and self.page >= page_count:
            more = False
        if total is not None and len(self.items) >= total:
            more = False
        self.page += 1
        return more


def _count(envelope: Mapping[str, Any], name: str) -> int | None:
    value = field(envelope, name)
    if value is None:
        return None
    number = _int(envelope, name)
    if number is None or number < 0:
        raise malformed(f"{name} is {value!r}, not a count")
    return number


def module_listing(device: Device, page_size: int) -> Listing[ModuleVersion]:
    """The listing of a device's module versions (one version per module name)."""

    def parse(item: Item, where: str) -> tuple[str, ModuleVersion]:
        module = parse_module(item, device, where)
        return module.module_name, module

    return Listing("SimpleOTAModuleInfo", page_size, "module", parse)


def job_listing(product_key: str, firmware_id: str, page_size: int) -> Listing[Job]:
    """The listing of a firmware's jobs that concern one device (each job once)."""

    def parse(item: Item, where: str) -> tuple[str, Job]:
        try:
            job = parse_job(item, product_key, firmware_id)
        except TransientError as error:
            raise malformed(f"{where}: {error.message}") from None
        return job.job_id, job

    return Listing("SimpleOTAJobInfo", page_size, "job", parse)
