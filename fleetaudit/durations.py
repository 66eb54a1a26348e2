"""Durations and times as people write them: ``30m``, ``1d12h``, ISO 8601 (pure).

Inside fleetaudit a duration is whole seconds (`int`) and a time is UTC epoch milliseconds;
this module is the one place that turns them into text and back.
"""

from __future__ import annotations

import datetime as dt
import re

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``30m``, ``6h``, ``7d``, ``1d12h`` or ``45s``."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(
            f"bad duration {text!r}: use days, hours, minutes, seconds in that order, "
            "e.g. '30m', '6h', '7d', '1d12h'"
        )
    seconds = sum(int(n) * unit for n, (_, unit) in zip(match.groups(), _UNITS, strict=True) if n)
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be longer than zero")
    return seconds


def format_duration(seconds: float, *, parts: int = 2) -> str:
    """A compact human duration (``3d 4h``), keeping the `parts` largest non-zero units.

    Under two days it counts hours (``24h``, ``36h``), as people write task limits.
    """
    seconds = round(seconds)
    if seconds <= 0:
        return "0s"
    units = _UNITS if seconds >= 2 * 86_400 else _UNITS[1:]
    out: list[str] = []
    for suffix, unit in units:
        count, seconds = divmod(seconds, unit)
        if count:
            out.append(f"{count}{suffix}")
    return " ".join(out[:parts])


def parse_iso8601(text: str) -> int:
    """UTC epoch milliseconds of an ISO 8601 time; ``Z`` and offsets accepted, naive is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"bad time {text!r}: use ISO 8601, e.g. '2024-11-19T09:47:43Z'") from None
    return epoch_ms(moment)


def epoch_ms(moment: dt.datetime) -> int:
    """UTC epoch milliseconds of a datetime; a naive one is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # Integer arithmetic on the timedelta: float seconds would round some milliseconds.
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


def time_id(epoch_ms_value: int, random_bits: int) -> str:
    """`YYYYMMDDTHHMMSSZ-xxxxxx`: a UTC time and 6 hex characters; ids of this form sort by time.

    Run ids and remediation batch ids both use it.
    """
    moment = dt.datetime.fromtimestamp(epoch_ms_value / 1000, tz=dt.UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{random_bits & 0xFFFFFF:06x}"
