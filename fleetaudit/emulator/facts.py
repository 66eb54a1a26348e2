"""The platform facts the emulator plays by: action names, quotas, page and cancel limits.

Deliberate copies, not imports of `fleetaudit.api.protocol` or `fleetaudit.terms`: the
emulator is the independent check of the client, so a wrong fact on the client's side must
not silently become the emulator's too. Both were written from the platform's reference
pages; tests/test_protocol_facts.py pins that the two copies agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

LIST_MODULE_VERSIONS: Final = "ListOTAModuleVersionsByDevice"
LIST_UNFINISHED_TASKS: Final = "ListOTAUnfinishedTaskByDevice"
QUERY_FIRMWARE: Final = "QueryOTAFirmware"
LIST_JOBS: Final = "ListOTAJobByDevice"
CANCEL_TASKS: Final = "CancelOTATaskByDevice"
LIST_FIRMWARE: Final = "ListOTAFirmware"
LIST_JOBS_BY_FIRMWARE: Final = "ListOTAJobByFirmware"
LIST_TASKS_BY_JOB: Final = "ListOTATaskByJob"

# Calls per second per account and action; QueryOTAFirmware is allowed twice the rest.
DEFAULT_QUOTAS: Mapping[str, float] = {
    LIST_MODULE_VERSIONS: 10.0,
    LIST_UNFINISHED_TASKS: 10.0,
    QUERY_FIRMWARE: 20.0,
    LIST_JOBS: 10.0,
    CANCEL_TASKS: 10.0,
    LIST_FIRMWARE: 10.0,
    LIST_JOBS_BY_FIRMWARE: 10.0,
    LIST_TASKS_BY_JOB: 10.0,
}
# The quota of an action the table above does not name.
DEFAULT_RATE: Final = 10.0
# The largest PageSize each listing action accepts.
MODULE_PAGE_SIZE: Final = 200
JOB_PAGE_SIZE: Final = 100
FIRMWARE_PAGE_SIZE: Final = 100
FIRMWARE_JOB_PAGE_SIZE: Final = 200
TASK_PAGE_SIZE: Final = 100
# ListOTATaskByJob: CurrentPage x PageSize may not pass this.
TASK_WINDOW: Final = 100_000
MAX_TASK_DEVICE_NAMES: Final = 50
# At most this many DeviceName.N per CancelOTATaskByDevice call.
MAX_CANCEL_DEVICES: Final = 200

UNFINISHED_STATUSES: tuple[str, ...] = ("CONFIRM", "QUEUED", "NOTIFIED", "IN_PROGRESS")
TERMINAL_STATUSES: tuple[str, ...] = ("SUCCEEDED", "FAILED", "CANCELED")
