"""What a run's results depend on: its inputs' identity, so a resume never mixes two runs.

A staged run records `run_inputs` when it starts; `--resume` continues it only when today's
inputs are the same. The device list and the policy count by content (a path can be reused
for another export), the other settings that change what a run finds by value (the rows
marked `identity` in config.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleetaudit.config import Settings
from fleetaudit.settings import identity_values

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in bounded chunks (memory stays flat)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def run_inputs(settings: Settings) -> dict[str, Any]:
    """The identity of a run's inputs, as JSON values (recorded in meta.json and the manifest)."""
    assert settings.devices is not None  # settings_from() refuses a run without one
    return {
        "device_list_sha256": file_sha256(settings.devices),
        "policy_sha256": file_sha256(settings.policy) if settings.policy else None,
        "settings": identity_values(settings),
    }


def input_differences(staged: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """What differs between a staged run's inputs and today's, in words (empty: the same)."""
    if staged is None:
        return ["its inputs were not recorded"]
    words = {"device_list_sha256": "the device list", "policy_sha256": "the policy"}
    differences = [words[key] for key in words if staged.get(key) != current.get(key)]
    staged_settings = staged.get("settings") or {}
    for name, value in (current.get("settings") or {}).items():
        if staged_settings.get(name) != value:
            differences.append(f"the setting {name}")
    return differences
