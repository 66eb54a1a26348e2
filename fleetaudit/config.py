"""Policy files and job files (TOML) turned into typed, validated settings.

Everything here reads at most one small TOML file and otherwise is pure. Errors are
`UsageError`s that name the file and the key, e.g. ``policy.toml: targets[1]: ...``.
Durations are written ``30m``, ``6h``, ``7d``, ``1d12h`` or ``45s``; times inside are UTC
epoch milliseconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleetaudit.errors import UsageError
from fleetaudit.gate import parse_gate
from fleetaudit.models import UNFINISHED_STATUSES

ACTIONS: tuple[str, ...] = (
    "ListOTAModuleVersionsByDevice",
    "ListOTAUnfinishedTaskByDevice",
    "QueryOTAFirmware",
    "ListOTAJobByDevice",
    "CancelOTATaskByDevice",
)

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


def format_duration(seconds: int, *, parts: int = 2) -> str:
    """A compact human duration (``3d 4h``), keeping the `parts` largest non-zero units.

    Under two days it counts hours (``24h``, ``36h``), as people write task limits.
    """
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
    return _epoch_ms(moment)


def _epoch_ms(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # Integer arithmetic on the timedelta: float seconds would round some milliseconds.
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


# ---------------------------------------------------------------------------- policy

DEFAULT_STALLED_AFTER: Mapping[str, int] = MappingProxyType(
    {"CONFIRM": 7 * 86_400, "QUEUED": 24 * 3_600, "NOTIFIED": 24 * 3_600, "IN_PROGRESS": 6 * 3_600}
)


@dataclass(frozen=True, slots=True)
class Target:
    """The version one (product, module) should run: a literal version or a firmware's."""

    product_key: str
    module: str
    firmware_id: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """What counts as a problem: task age limits per status, and version targets."""

    stalled_after: Mapping[str, int] = field(default_factory=lambda: DEFAULT_STALLED_AFTER)
    targets: tuple[Target, ...] = ()


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; `stalled_after` entries it omits keep the defaults."""
    path = Path(path)
    data = _read_toml(path)
    _reject_unknown(path, "", data, {"stalled_after", "targets"})
    stalled = dict(DEFAULT_STALLED_AFTER)
    table = data.get("stalled_after", {})
    if not isinstance(table, dict):
        raise _error(path, "stalled_after", "must be a table of status = duration")
    for status, value in table.items():
        if status not in UNFINISHED_STATUSES:
            raise _error(
                path,
                f"stalled_after.{status}",
                f"unknown status; use {', '.join(UNFINISHED_STATUSES)}",
            )
        stalled[status] = _duration(path, f"stalled_after.{status}", value)
    targets = data.get("targets", [])
    if not isinstance(targets, list):
        raise _error(path, "targets", "must be an array of tables ([[targets]])")
    parsed = tuple(_target(path, f"targets[{i}]", raw) for i, raw in enumerate(targets))
    seen: dict[tuple[str, str], int] = {}
    for i, target in enumerate(parsed):
        key = (target.product_key, target.module)
        if key in seen:
            raise _error(
                path,
                f"targets[{i}]",
                f"duplicate target for {key[0]}/{key[1]} (see targets[{seen[key]}])",
            )
        seen[key] = i
    return Policy(stalled_after=MappingProxyType(stalled), targets=parsed)


def _target(path: Path, key: str, raw: object) -> Target:
    if not isinstance(raw, dict):
        raise _error(path, key, "must be a table")
    _reject_unknown(path, key, raw, {"product_key", "module", "firmware_id", "version"})
    product_key = _string(path, f"{key}.product_key", raw.get("product_key"))
    # A target without a module names the whole-device firmware, as the platform does.
    module = _string(path, f"{key}.module", raw.get("module", "default"))
    firmware_id = _optional_string(path, f"{key}.firmware_id", raw.get("firmware_id"))
    version = _optional_string(path, f"{key}.version", raw.get("version"))
    if (firmware_id is None) == (version is None):
        raise _error(path, key, "set exactly one of firmware_id and version")
    return Target(product_key, module, firmware_id, version)


# ---------------------------------------------------------------------------- job files


@dataclass(frozen=True, slots=True)
class JobSettings:
    """Every `run` setting, as a job file or the command line gives it; None means not set."""

    endpoint: str | None = None
    devices: Path | None = None
    policy: Path | None = None
    out: Path | None = None
    qps: float | None = None  # every action's quota
    quotas: Mapping[str, float] | None = None  # per action, overriding `qps`
    concurrency: int | None = None
    now: int | None = None  # epoch ms
    resume: bool | None = None
    method: str | None = None  # "POST" | "GET"
    request_timeout: float | None = None  # seconds
    connect_timeout: float | None = None  # seconds
    retry_attempts: int | None = None
    log_format: str | None = None  # "text" | "json"
    metrics: Path | None = None
    min_coverage: float | None = None  # 0..1
    # Devices per durable commit: a killed run fetches at most this many again.
    commit_every: int | None = None
    gate: Mapping[str, Any] | None = None


def merge(job: JobSettings, overrides: JobSettings) -> JobSettings:
    """`job` with every setting that `overrides` sets replaced (the command line wins)."""
    changes = {
        f.name: getattr(overrides, f.name)
        for f in dataclasses.fields(overrides)
        if getattr(overrides, f.name) is not None
    }
    return dataclasses.replace(job, **changes)


def load_job(path: str | Path) -> JobSettings:
    """Read and validate a job file; relative paths resolve against the file's directory."""
    path = Path(path)
    data = _read_toml(path)
    known = {f.name for f in dataclasses.fields(JobSettings)}
    _reject_unknown(path, "", data, known)
    base = path.parent
    values: dict[str, Any] = {}
    for name, raw in data.items():
        values[name] = _JOB_PARSERS[name](path, name, raw, base)
    return JobSettings(**values)


def _job_endpoint(path: Path, key: str, raw: object, base: Path) -> str:
    text = _string(path, key, raw)
    if not text.startswith(("http://", "https://")):
        raise _error(path, key, "must be an http:// or https:// URL")
    return text


def _job_path(path: Path, key: str, raw: object, base: Path) -> Path:
    text = _string(path, key, raw)
    # normpath keeps `jobs/../out` readable as `out` in messages and the manifest.
    return Path(os.path.normpath(base / Path(text).expanduser()))


def _job_positive(path: Path, key: str, raw: object, base: Path) -> float:
    return _positive(path, key, raw)


def _job_quotas(path: Path, key: str, raw: object, base: Path) -> Mapping[str, float]:
    if not isinstance(raw, dict):
        raise _error(path, key, "must be a table of action = calls per second")
    for action in raw:
        if action not in ACTIONS:
            raise _error(path, f"{key}.{action}", f"unknown action; use {', '.join(ACTIONS)}")
    return MappingProxyType({a: _positive(path, f"{key}.{a}", v) for a, v in raw.items()})


def _job_count(path: Path, key: str, raw: object, base: Path) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise _error(path, key, "must be a whole number of at least 1")
    return raw


def _job_now(path: Path, key: str, raw: object, base: Path) -> int:
    # An unquoted TOML datetime arrives already parsed; a quoted one is ISO 8601 text.
    if isinstance(raw, dt.datetime):
        return _epoch_ms(raw)
    if isinstance(raw, str):
        try:
            return parse_iso8601(raw)
        except ValueError as error:
            raise _error(path, key, str(error)) from None
    raise _error(path, key, "must be an ISO 8601 date and time")


def _job_bool(path: Path, key: str, raw: object, base: Path) -> bool:
    if not isinstance(raw, bool):
        raise _error(path, key, "must be true or false")
    return raw


def _job_method(path: Path, key: str, raw: object, base: Path) -> str:
    return _choice(path, key, raw, ("POST", "GET"), upper=True)


def _job_log_format(path: Path, key: str, raw: object, base: Path) -> str:
    return _choice(path, key, raw, ("text", "json"), upper=False)


def _job_fraction(path: Path, key: str, raw: object, base: Path) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
        raise _error(path, key, "must be a number from 0 to 1")
    return float(raw)


def _job_gate(path: Path, key: str, raw: object, base: Path) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise _error(path, key, "must be a table ([gate])")
    # Validated here so a bad gate fails before any call; `gate.parse_gate(job.gate)` then
    # cannot fail, and the manifest keeps recording the table as the job file wrote it.
    parse_gate(raw, where=str(path))
    return dict(raw)


_JOB_PARSERS = {
    "endpoint": _job_endpoint,
    "devices": _job_path,
    "policy": _job_path,
    "out": _job_path,
    "qps": _job_positive,
    "quotas": _job_quotas,
    "concurrency": _job_count,
    "now": _job_now,
    "resume": _job_bool,
    "method": _job_method,
    "request_timeout": _job_positive,
    "connect_timeout": _job_positive,
    "retry_attempts": _job_count,
    "log_format": _job_log_format,
    "metrics": _job_path,
    "min_coverage": _job_fraction,
    "commit_every": _job_count,
    "gate": _job_gate,
}


# ---------------------------------------------------------------------------- helpers


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not valid UTF-8") from None


def _error(path: Path, key: str, problem: str) -> UsageError:
    return UsageError(f"{path}: {key}: {problem}")


def _reject_unknown(path: Path, prefix: str, table: Mapping[str, object], known: set[str]) -> None:
    for name in table:
        if name not in known:
            key = f"{prefix}.{name}" if prefix else name
            raise _error(path, key, f"unknown key; expected one of {', '.join(sorted(known))}")


def _string(path: Path, key: str, raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _error(path, key, "must be a non-empty string")
    return raw.strip()


def _optional_string(path: Path, key: str, raw: object) -> str | None:
    return None if raw is None else _string(path, key, raw)


def _duration(path: Path, key: str, raw: object) -> int:
    if not isinstance(raw, str):
        raise _error(path, key, 'must be a duration string such as "24h"')
    try:
        return parse_duration(raw)
    except ValueError as error:
        raise _error(path, key, str(error)) from None


def _positive(path: Path, key: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0:
        raise _error(path, key, "must be a number greater than 0")
    return float(raw)


def _choice(path: Path, key: str, raw: object, choices: tuple[str, ...], *, upper: bool) -> str:
    if isinstance(raw, str):
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value in choices:
            return value
    raise _error(path, key, f"must be one of {', '.join(choices)}")
