"""What the sweep's three listings mean (SWEEP.md): firmware, a firmware's jobs, a job's tasks.

Pure, and as distrustful as responses.py, whose envelope, item and page checks these reuse:
every item must name what was asked about, and a job's task listing that promises more than
the 100,000-row window raises `WindowExceeded` instead of being read in part.
"""

from __future__ import annotations

from dataclasses import replace

from fleetaudit.api.responses import (
    Item,
    Listing,
    _about,
    _int,
    _required,
    _text,
    field,
    malformed,
    parse_job,
    parse_utc_ms,
    strip_url_queries,
)
from fleetaudit.errors import TransientError
from fleetaudit.models import Firmware, Job, Task


def parse_listed_firmware(item: Item, product_key: str | None, where: str) -> Firmware:
    """One SimpleFirmwareInfo: no URL and no verify progress (ListOTAFirmware gives neither)."""
    _about(item, {"ProductKey": product_key}, where)
    return Firmware(
        firmware_id=_required(item, "FirmwareId", where),
        firmware_name=_text(item, "FirmwareName"),
        product_key=_text(item, "ProductKey") or product_key,
        product_name=_text(item, "ProductName"),
        module_name=_text(item, "ModuleName"),
        src_version=_text(item, "SrcVersion"),
        dest_version=_text(item, "DestVersion"),
        status=_int(item, "Status"),
        type=_int(item, "Type"),
        sign_method=_text(item, "SignMethod"),
        firmware_sign=_text(item, "FirmwareSign"),
        firmware_size=_int(item, "FirmwareSize"),
        verify_progress=None,
        firmware_url=None,
        utc_create=parse_utc_ms(field(item, "UtcCreate")),
        utc_modified=parse_utc_ms(field(item, "UtcModified")),
    )


def firmware_listing(product_key: str | None, page_size: int) -> Listing[Firmware]:
    """The listing of a product's firmware (the account's, without a product key)."""

    def parse(item: Item, where: str) -> tuple[str, Firmware]:
        package = parse_listed_firmware(item, product_key, where)
        return package.firmware_id, package

    return Listing("FirmwareInfo.SimpleFirmwareInfo", page_size, "firmware", parse)


def firmware_job_listing(firmware: Firmware, page_size: int) -> Listing[Job]:
    """The listing of every job of one firmware (of any status)."""

    def parse(item: Item, where: str) -> tuple[str, Job]:
        try:
            # A job of another product is not this firmware's: it does not prove itself.
            job = parse_job(item, firmware.product_key, firmware.firmware_id)
        except TransientError as error:
            raise malformed(f"{where}: {error.message}") from None
        # The listing is of this firmware's jobs: a job that does not say so still is.
        return job.job_id, replace(
            job,
            firmware_id=job.firmware_id or firmware.firmware_id,
            product_key=job.product_key or firmware.product_key,
        )

    return Listing("SimpleOTAJobInfo", page_size, "job", parse)


def job_task_listing(
    job: Job, module_name: str | None, status: str | None, page_size: int, window: int
) -> Listing[Task]:
    """The listing of a job's tasks in one status; WindowExceeded past the window.

    A task must name its device (the join needs it), belong to the job and be in the status
    asked for: a server that ignores the filter is not believed. The module is the
    firmware's (SimpleOTATaskInfo has none).
    """
    expected = {"JobId": job.job_id, "FirmwareId": job.firmware_id, "TaskStatus": status}

    def parse(item: Item, where: str) -> tuple[str, Task]:
        _about(item, {**expected, "ProductKey": job.product_key}, where)
        task = Task(
            task_id=_required(item, "TaskId", where),
            job_id=job.job_id,
            firmware_id=_text(item, "FirmwareId") or job.firmware_id,
            product_key=_text(item, "ProductKey") or job.product_key,
            product_name=_text(item, "ProductName"),
            device_name=_required(item, "DeviceName", where),
            iot_id=_text(item, "IotId"),
            module_name=_text(item, "ModuleName") or module_name or "default",
            src_version=_text(item, "SrcVersion"),
            dest_version=_text(item, "DestVersion"),
            task_status=_required(item, "TaskStatus", where),
            utc_create=parse_utc_ms(field(item, "UtcCreate")),
            utc_modified=parse_utc_ms(field(item, "UtcModified")),
            progress=_percent(field(item, "Progress")),
            task_desc=strip_url_queries(_text(item, "TaskDesc")) or None,
            job_timeout_minutes=_int(item, "Timeout"),
        )
        if task.product_key is None:
            raise malformed(f"{where} has no ProductKey")
        return task.task_id, task

    return Listing("SimpleOTATaskInfo", page_size, "task", parse, window=window)


def _percent(value: object) -> int | None:
    """`Progress` ("40", "40%", 40): a percentage 0..100, None when it is not one."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().removesuffix("%").strip()
    try:
        number = round(float(text))
    except ValueError:
        return None
    return number if 0 <= number <= 100 else None
