"""The systemd pair under jobs/: the nightly run has a deadline and its directories exist."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[1] / "jobs"
SERVICE = JOBS / "fleetaudit-nightly.service"
TIMER = JOBS / "fleetaudit-nightly.timer"
NIGHTLY = JOBS / "nightly.toml"
DAY_S = 86_400
# Slack between a stopped run and the next night's start (a slow disk, a late timer).
MARGIN_S = 30 * 60
# A whole-fleet audit must get most of the night: a limit this short would be a typo.
AT_LEAST_S = 12 * 3_600

_SPAN_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "": 1.0, "s": 1.0, "sec": 1.0,
    "second": 1.0, "seconds": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3_600.0, "hr": 3_600.0, "hour": 3_600.0, "hours": 3_600.0, "d": 86_400.0,
    "day": 86_400.0, "days": 86_400.0, "w": 604_800.0, "week": 604_800.0, "weeks": 604_800.0,
}  # fmt: skip
_SPAN_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)")


def timespan(text: str) -> float:
    """Seconds in a systemd time span (systemd.time(7)): `120`, `10m`, `22h`, `1h 30min`."""
    text = text.strip()
    if text == "infinity":
        return float("inf")
    seconds, position = 0.0, 0
    while position < len(text):
        match = _SPAN_PART.match(text, position)
        assert match is not None, f"bad time span {text!r}"
        assert match.end() > position, f"bad time span {text!r}"
        seconds += float(match.group(1)) * _SPAN_UNITS[match.group(2)]
        position = match.end()
    return seconds


def unit(path: Path) -> configparser.ConfigParser:
    """A unit file's sections (keys keep their case; a repeated key keeps its last value)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def test_service_run_is_bounded_before_the_next_night() -> None:
    """The run's limit (TimeoutStartSec, the one a oneshot obeys) is set, long enough for a
    whole-fleet audit, and with the graceful stop and the timer's random delay still ends a
    margin before the next daily start, which the timer would skip while the run lives."""
    service = unit(SERVICE)["Service"]
    timer = unit(TIMER)["Timer"]
    assert service["Type"] == "oneshot"
    assert timer["OnCalendar"].startswith("*-*-* ")  # daily: the next start is a day later
    limit = timespan(service.get("TimeoutStartSec", "infinity"))
    stop = timespan(service["TimeoutStopSec"])
    delay = timespan(timer.get("RandomizedDelaySec", "0"))
    assert limit >= AT_LEAST_S
    assert limit + stop + delay + MARGIN_S <= DAY_S
    if "RuntimeMaxSec" in service:
        assert timespan(service["RuntimeMaxSec"]) == limit
    # The limit stops the run with SIGTERM: fleetaudit commits, exits 4, tomorrow resumes.
    assert service["KillSignal"] == "SIGTERM"
    assert tomllib.loads(NIGHTLY.read_text(encoding="utf-8"))["resume"] is True


def test_service_creates_the_directories_the_job_writes() -> None:
    """StateDirectory= holds the nightly job's device list and reports, LogsDirectory= exists,
    and every other path the job writes is declared writable."""
    service = unit(SERVICE)["Service"]
    assert service.get("StateDirectory") == "fleetaudit"
    assert service.get("LogsDirectory") == "fleetaudit"
    job = tomllib.loads(NIGHTLY.read_text(encoding="utf-8"))
    state = Path("/var/lib/fleetaudit")
    for key in ("out", "devices"):
        assert Path(job[key]).is_relative_to(state), key
    writable = [Path(p.lstrip("-")) for p in service.get("ReadWritePaths", "").split()]
    assert any(Path(job["metrics"]).parent.is_relative_to(p) for p in writable)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("120", 120.0), ("10m", 600.0), ("22h", 79_200.0), ("1h 30min", 5_400.0), ("2d", 172_800.0)],
)
def test_timespan_reads_systemd_spans(text: str, seconds: float) -> None:
    """The test's time-span reader agrees with systemd.time(7) on the forms the units use."""
    assert timespan(text) == seconds
