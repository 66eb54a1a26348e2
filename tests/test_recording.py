"""What a resumed run knows from the rows an earlier session committed."""

from __future__ import annotations

from pathlib import Path

from fleetaudit.models import CallFailure, Firmware
from fleetaudit.recording import lookups_from
from fleetaudit.report.staging import RunStaging

RUN_ID = "20241119T094743Z-00abcd"


def _failure(action: str, firmware_id: str, job_id: str | None) -> CallFailure:
    return CallFailure(action, "pk1", "d1", firmware_id, job_id, "InternalError", "m", 500, 8, None)


def test_resumed_lookups_know_earlier_answers_and_failures(tmp_path: Path) -> None:
    """Firmware fetched, and firmware or jobs whose lookup failed for good, are not asked again."""
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
    # The client is never called: every key asked about below is already known.
    lookups = lookups_from(RunStaging.open(tmp_path, RUN_ID), client=None)  # type: ignore[arg-type]
    assert lookups.firmware_by_id == {"F1": firmware}
    assert lookups.firmware.known("F9")
    assert lookups.jobs.known(("F1", "J7"))
    assert not lookups.jobs.known(("F1", "J8"))
