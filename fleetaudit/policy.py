"""The policy file (TOML): task age limits per status and version targets (pure but for the read).

Errors are `UsageError`s that name the file and the key, e.g. ``policy.toml: targets[1]: ...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from fleetaudit.terms import UNFINISHED_STATUSES
from fleetaudit.tomlfile import (
    duration,
    key_error,
    optional_string,
    read_toml,
    reject_unknown,
    string,
)

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
    data = read_toml(path)
    reject_unknown(path, "", data, {"stalled_after", "targets"})
    stalled = dict(DEFAULT_STALLED_AFTER)
    table = data.get("stalled_after", {})
    if not isinstance(table, dict):
        raise key_error(path, "stalled_after", "must be a table of status = duration")
    for status, value in table.items():
        if status not in UNFINISHED_STATUSES:
            raise key_error(
                path,
                f"stalled_after.{status}",
                f"unknown status; use {', '.join(UNFINISHED_STATUSES)}",
            )
        stalled[status] = duration(path, f"stalled_after.{status}", value)
    targets = data.get("targets", [])
    if not isinstance(targets, list):
        raise key_error(path, "targets", "must be an array of tables ([[targets]])")
    parsed = tuple(_target(path, f"targets[{i}]", raw) for i, raw in enumerate(targets))
    seen: dict[tuple[str, str], int] = {}
    for i, target in enumerate(parsed):
        key = (target.product_key, target.module)
        if key in seen:
            raise key_error(
                path,
                f"targets[{i}]",
                f"duplicate target for {key[0]}/{key[1]} (see targets[{seen[key]}])",
            )
        seen[key] = i
    return Policy(stalled_after=MappingProxyType(stalled), targets=parsed)


def _target(path: Path, key: str, raw: object) -> Target:
    if not isinstance(raw, dict):
        raise key_error(path, key, "must be a table")
    reject_unknown(path, key, raw, {"product_key", "module", "firmware_id", "version"})
    product_key = string(path, f"{key}.product_key", raw.get("product_key"))
    # A target without a module names the whole-device firmware, as the platform does.
    module = string(path, f"{key}.module", raw.get("module", "default"))
    firmware_id = optional_string(path, f"{key}.firmware_id", raw.get("firmware_id"))
    version = optional_string(path, f"{key}.version", raw.get("version"))
    if (firmware_id is None) == (version is None):
        raise key_error(path, key, "set exactly one of firmware_id and version")
    return Target(product_key, module, firmware_id, version)
