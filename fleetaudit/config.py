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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleetaudit.durations import epoch_ms as _epoch_ms
from fleetaudit.durations import parse_iso8601
from fleetaudit.gate import parse_gate
from fleetaudit.tomlfile import key_error as _error
from fleetaudit.tomlfile import read_toml as _read_toml
from fleetaudit.tomlfile import reject_unknown as _reject_unknown
from fleetaudit.tomlfile import string as _string

ACTIONS: tuple[str, ...] = (
    "ListOTAModuleVersionsByDevice",
    "ListOTAUnfinishedTaskByDevice",
    "QueryOTAFirmware",
    "ListOTAJobByDevice",
    "CancelOTATaskByDevice",
)

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
