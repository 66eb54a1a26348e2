"""What a resumed run knows from the rows an earlier session committed."""

from __future__ import annotations

from pathlib import Path

from fleetaudit.models import CallFailure, Firmware
from fleetaudit.report.resume import committed_lookups
from fleetaudit.report.staging import RunStaging

RUN_ID = "20241119T094743Z-00abcd"


def _failure(action: str, firmware_id: str, job_id: str | None) -> CallFailure:
    return CallFailure(action, "pk1", "d1", firmware_id, job_id, "InternalError", "m", 500, 8, None)


def test_resumed_lookups_know_earlier_answers_and_failures(tmp_path: Path) -> None:
    """A resumed run knows the firmware fetched and the firmware and jobs whose lookup failed."""
    staging = RunStaging.create(tmp_path, RUN_ID, {})
    firmware = Firmware(
        "F1", "fw", "pk1", None, "default", None, "2.0", 1, 0, None, None, None, None, None,
        1_731_974_400_000, None,
    )  # fmt: skip
    staging.append("firmware", [firmware])
    staging.append(
        "errors",
        [_failure("QueryOTAFirmware", "F9", None), _failure("ListOTAJobByDevice", "F1", "J7")],
    )
    staging.commit()
    known = committed_lookups(RunStaging.open(tmp_path, RUN_ID))
    assert known.firmware == [firmware]
    assert known.failed_firmware == {"F9"}
    assert known.failed_jobs == {("F1", "J7")}
