"""The OTA actions over a `Fleet`: parameter checks, business errors, response bodies.

Pure (no I/O): parameters in, a lowerCamel response body out (the app re-cases it). A
missing action parameter raises `GatewayError` (HTTP 400 `Missing<Param>`); a business
error is an HTTP 200 body with `success: false`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetaudit.emulator import facts
from fleetaudit.emulator.fleet import Fleet, FleetDevice, FleetFirmware, FleetJob, FleetTask


class GatewayError(Exception):
    """A refusal by the gateway: HTTP status, code and message of the error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BusinessError(Exception):
    """A refusal by the platform: HTTP 200, `success: false`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Context:
    """What an action needs beyond its parameters; `cancelled` is filled in by Cancel."""

    fleet: Fleet
    cancellable: frozenset[str]
    now_ms: int
    cancelled: int = 0
    # task id -> the status ListOTATaskByJob shows instead (None: it leaves the task out),
    # so tests can plant a disagreement between the two listings.
    job_listing_skew: Mapping[str, str | None] = field(default_factory=dict)
    task_window: int = facts.TASK_WINDOW


def format_time(ms: int) -> str:
    """`2024-09-11T03:40:02.734Z` from UTC epoch milliseconds."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def business_error(request_id: str, code: str, message: str) -> dict[str, Any]:
    """The body of an HTTP 200 failure."""
    return {"code": code, "errorMessage": message, "requestId": request_id, "success": False}


def run(
    action: str, context: Context, request_id: str, params: Mapping[str, str]
) -> dict[str, Any]:
    """The response body of one known action (GatewayError escapes for missing parameters)."""
    try:
        fields = HANDLERS[action](context, params)
    except BusinessError as error:
        return business_error(request_id, error.code, error.message)
    return {"code": "", "requestId": request_id, "success": True, **fields}


def _require(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise GatewayError(400, f"Missing{name}", f"{name} is mandatory for this action.")
    return value


def _page(params: Mapping[str, str], max_size: int) -> tuple[int, int]:
    raw_page, raw_size = _require(params, "CurrentPage"), _require(params, "PageSize")
    try:
        page, size = int(raw_page), int(raw_size)
    except ValueError:
        page = size = 0
    if page < 1 or not 1 <= size <= max_size:
        raise BusinessError(
            "iot.common.InvalidPageParams", f"CurrentPage >= 1 and 1 <= PageSize <= {max_size}."
        )
    return page, size


def _paged(items: Sequence[Any], page: int, size: int, list_name: str) -> dict[str, Any]:
    total = len(items)
    start = (page - 1) * size
    return {
        "currentPage": page,
        "data": {list_name: items[start : start + size]},
        "pageCount": -(-total // size),
        "pageSize": size,
        "total": total,
    }


def _device(fleet: Fleet, params: Mapping[str, str]) -> FleetDevice:
    """The device named by `IotId` (which wins) or `ProductKey` + `DeviceName`."""
    iot_id = params.get("IotId")
    if iot_id:
        device = fleet.device_by_iot_id(iot_id)
    else:
        product_key, device_name = params.get("ProductKey"), params.get("DeviceName")
        if not product_key or not device_name:
            raise GatewayError(
                400, "MissingIotId", "IotId, or ProductKey and DeviceName, are mandatory."
            )
        _product(fleet, product_key)
        device = fleet.device(product_key, device_name)
    if device is None:
        raise BusinessError("iot.device.NotExistedDevice", "The device does not exist.")
    return device


def _product(fleet: Fleet, product_key: str) -> None:
    if not fleet.product_exists(product_key):
        raise BusinessError("iot.prod.NotExistedProduct", "The product does not exist.")


def _firmware(fleet: Fleet, firmware_id: str) -> FleetFirmware:
    firmware = fleet.firmware(firmware_id)
    if firmware is None:
        raise BusinessError("iot.ota.NotExistedFirmware", "The firmware does not exist.")
    return firmware


def _numbered(params: Mapping[str, str], prefix: str) -> list[str]:
    """The values of `Prefix.1`, `Prefix.2`, ... in index order."""
    found = []
    for name, value in params.items():
        index = name[len(prefix) + 1 :]
        if name.startswith(prefix + ".") and index.isdigit():
            found.append((int(index), value))
    return [value for _, value in sorted(found)]


def list_module_versions(context: Context, params: Mapping[str, str]) -> dict[str, Any]:
    """ListOTAModuleVersionsByDevice: the device's module versions, paged (<= 200)."""
    page, size = _page(params, facts.MODULE_PAGE_SIZE)
    device = _device(context.fleet, params)
    items = [
        {
            "deviceName": device.device_name,
            "iotId": device.iot_id,
            "moduleName": name,
            "moduleVersion": version,
            "productKey": device.product_key,
        }
        for name, version in device.modules.items()
    ]
    return _paged(items, page, size, "simpleOTAModuleInfo")


def list_unfinished_tasks(context: Context, params: Mapping[str, str]) -> dict[str, Any]:
    """ListOTAUnfinishedTaskByDevice: unfinished tasks in the asked statuses, no paging."""
    statuses = _numbered(params, "TaskStatusList")
    if params.get("TaskStatus"):
        statuses.append(params["TaskStatus"])
    if not statuses:
        raise GatewayError(400, "MissingTaskStatus", "TaskStatus or TaskStatusList is mandatory.")
    if any(s not in facts.UNFINISHED_STATUSES for s in statuses):
        raise BusinessError("iot.system.IllegalRequest", "Unknown task status.")
    device = _device(context.fleet, params)
    module = params.get("ModuleName")
    tasks = [
        t
        for t in context.fleet.tasks(device)
        if t.status in statuses and (not module or t.module_name == module)
    ]
    tasks.sort(key=lambda t: (t.utc_create_ms, t.task_id))
    return {"data": {"simpleOTATaskInfo": [_task_item(t, device) for t in tasks]}}


def _task_item(task: FleetTask, device: FleetDevice) -> dict[str, Any]:
    return {
        "destVersion": task.dest_version,
        "deviceName": task.device_name,
        "firmwareId": task.firmware_id,
        "iotId": device.iot_id,
        "jobId": task.job_id,
        "moduleName": task.module_name,
        "productKey": task.product_key,
        "productName": task.product_name,
        "srcVersion": task.src_version,
        "taskId": task.task_id,
        "taskStatus": task.status,
        "utcCreate": format_time(task.utc_create_ms),
        "utcModified": format_time(task.utc_modified_ms),
    }


def query_firmware(context: Context, params: Mapping[str, str]) -> dict[str, Any]:
    """QueryOTAFirmware: one firmware's details (its URL is presigned, query string included)."""
    fw = _firmware(context.fleet, _require(params, "FirmwareId"))
    # FirmwareInfo is the listing's SimpleFirmwareInfo and what a listing leaves out.
    info = {
        **_simple_firmware(fw),
        "firmwareUrl": fw.firmware_url,
        "udi": fw.udi,
        "verifyProgress": fw.verify_progress,
    }
    return {"firmwareInfo": info}


def list_jobs_by_device(context: Context, params: Mapping[str, str]) -> dict[str, Any]:
    """ListOTAJobByDevice: the firmware's jobs the device is part of, paged (<= 100)."""
    product_key = _require(params, "ProductKey")
    device_name = _require(params, "DeviceName")
    firmware_id = _require(params, "FirmwareId")
    page, size = _page(params, facts.JOB_PAGE_SIZE)
    _product(context.fleet, product_key)
    device = context.fleet.device(product_key, device_name)
    if device is None:
        raise BusinessError("iot.device.NotExistedDevice", "The device does not exist.")
    _firmware(context.fleet, firmware_id)
    jobs = context.fleet.jobs_of_device(device, firmware_id)
    return _paged([_job_item(j) for j in jobs], page, size, "simpleOTAJobInfo")


def _job_item(job: FleetJob) -> dict[str, Any]:
    return {
        "firmwareId": job.firmware_id,
        "jobId": job.job_id,
        "jobStatus": job.status,
        "jobType": job.job_type,
        "productKey": job.product_key,
        "selectionType": job.selection_type,
        "targetSelection": job.target_selection,
        "utcCreate": format_time(job.utc_create_ms),
        "utcModified": format_time(job.utc_modified_ms),
    }


def cancel_tasks(context: Context, params: Mapping[str, str]) -> dict[str, Any]:
    """CancelOTATaskByDevice: cancellable matching tasks become CANCELED; the rest is a no-op."""
    product_key = _require(params, "ProductKey")
    firmware_id = _require(params, "FirmwareId")
    names = _numbered(params, "DeviceName")
    if not names:
        raise GatewayError(400, "MissingDeviceName", "DeviceName.N is mandatory for this action.")
    if len(names) > facts.MAX_CANCEL_DEVICES:
        message = f"At most {facts.MAX_CANCEL_DEVICES} DeviceName.N per call."
        raise BusinessError("iot.system.IllegalRequest", message)
    if len(set(names)) != len(names):
        raise BusinessError("iot.system.IllegalRequest", "DeviceName.N values must be unique.")
    _product(context.fleet, product_key)
    _firmware(context.fleet, firmware_id)
    context.cancelled = context.fleet.cancel(
        product_key,
        firmware_id,
        names,
        job_id=params.get("JobId") or None,
        cancellable=context.cancellable,
        now_ms=context.now_ms,
    )
    return {}


def list_firmware(context: Context, params: Mapping[str, str]) -> dict[str, Any]:
    """ListOTAFirmware: a product's firmware (every product's without one), paged (<= 100)."""
    page, size = _page(params, facts.FIRMWARE_PAGE_SIZE)
    product_key = params.get("ProductKey") or None
    if product_key is not None:
        _product(context.fleet, product_key)
    dest = params.get("DestVersion")
    listed = [
        f for f in context.fleet.product_firmware(product_key) if not dest or f.dest_version == dest
    ]
    body = _paged([_simple_firmware(f) for f in listed], page, size, "simpleFirmwareInfo")
    # The list sits under FirmwareInfo, not Data (SWEEP.md).
    body["firmwareInfo"] = body.pop("data")
    return body


def _simple_firmware(fw: FleetFirmware) -> dict[str, Any]:
    return {
        "destVersion": fw.dest_version,
        "firmwareDesc": fw.firmware_desc,
        "firmwareId": fw.firmware_id,
        "firmwareName": fw.firmware_name,
        "firmwareSign": fw.firmware_sign,
        "firmwareSize": fw.firmware_size,
        "moduleName": fw.module_name,
        "productKey": fw.product_key,
        "productName": fw.product_name,
        "signMethod": fw.sign_method,
        "srcVersion": fw.src_version,
        "status": fw.status,
        "type": fw.type,
        "utcCreate": format_time(fw.utc_create_ms),
        "utcModified": format_time(fw.utc_modified_ms),
    }


def list_jobs_by_firmware(context: Context, params: Mapping[str, str]) -> dict[str, Any]:
    """ListOTAJobByFirmware: every job of a firmware, of any status, paged (<= 200)."""
    firmware_id = _require(params, "FirmwareId")
    page, size = _page(params, facts.FIRMWARE_JOB_PAGE_SIZE)
    _firmware(context.fleet, firmware_id)
    jobs = context.fleet.jobs(firmware_id)
    return _paged([_job_item(j) for j in jobs], page, size, "simpleOTAJobInfo")


def list_tasks_by_job(context: Context, params: Mapping[str, str]) -> dict[str, Any]:
    """ListOTATaskByJob: a job's tasks (one status, some devices), paged (<= 100), at most
    `task_window` rows deep; the same tasks in the same state as the per-device listing."""
    job_id = _require(params, "JobId")
    page, size = _page({"CurrentPage": "1", "PageSize": "10", **params}, facts.TASK_PAGE_SIZE)
    if page * size > context.task_window:
        raise BusinessError(
            "iot.common.InvalidPageParams",
            f"CurrentPage x PageSize may not exceed {context.task_window}.",
        )
    status = params.get("TaskStatus") or None
    if status is not None and status not in (*facts.UNFINISHED_STATUSES, *facts.TERMINAL_STATUSES):
        raise BusinessError("iot.system.IllegalRequest", "Unknown task status.")
    names = set(_numbered(params, "DeviceNames"))
    if len(names) > facts.MAX_TASK_DEVICE_NAMES:
        message = f"At most {facts.MAX_TASK_DEVICE_NAMES} DeviceNames.N per call."
        raise BusinessError("iot.system.IllegalRequest", message)
    job = context.fleet.job(job_id)
    if job is None:
        raise BusinessError("iot.ota.NotExistedJob", "The job does not exist.")
    tasks = []
    for task in context.fleet.job_tasks(job):
        if task.task_id in context.job_listing_skew:
            skewed = context.job_listing_skew[task.task_id]
            if skewed is None:
                continue
            task = dataclasses.replace(task, status=skewed)
        if (status is None or task.status == status) and (not names or task.device_name in names):
            tasks.append(task)
    tasks.sort(key=lambda t: (t.utc_create_ms, t.task_id))
    # Only the page's items are built: a job can hold a hundred thousand tasks.
    body = _paged(tasks, page, size, "simpleOTATaskInfo")
    shown = body["data"]["simpleOTATaskInfo"]
    body["data"]["simpleOTATaskInfo"] = [_job_task_item(t, context.fleet, job) for t in shown]
    return body


def _job_task_item(task: FleetTask, fleet: Fleet, job: FleetJob) -> dict[str, Any]:
    """A SimpleOTATaskInfo by job: no module name; progress, description and timeout."""
    device = fleet.device(task.product_key, task.device_name)
    return {
        "destVersion": task.dest_version,
        "deviceName": task.device_name,
        "firmwareId": task.firmware_id,
        "iotId": device.iot_id if device is not None else "",
        "jobId": task.job_id,
        "productKey": task.product_key,
        "productName": task.product_name,
        "progress": str(task.progress),
        "srcVersion": task.src_version,
        "taskDesc": task.task_desc,
        "taskId": task.task_id,
        "taskStatus": task.status,
        "timeout": "" if job.timeout_minutes is None else str(job.timeout_minutes),
        "utcCreate": format_time(task.utc_create_ms),
        "utcModified": format_time(task.utc_modified_ms),
    }


HANDLERS: Mapping[str, Callable[[Context, Mapping[str, str]], dict[str, Any]]] = {
    facts.LIST_MODULE_VERSIONS: list_module_versions,
    facts.LIST_UNFINISHED_TASKS: list_unfinished_tasks,
    facts.QUERY_FIRMWARE: query_firmware,
    facts.LIST_JOBS: list_jobs_by_device,
    facts.CANCEL_TASKS: cancel_tasks,
    facts.LIST_FIRMWARE: list_firmware,
    facts.LIST_JOBS_BY_FIRMWARE: list_jobs_by_firmware,
    facts.LIST_TASKS_BY_JOB: list_tasks_by_job,
}
