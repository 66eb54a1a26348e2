"""Reading one small TOML file, and the checks its values share (pure but for the read).

Every problem is a `UsageError` naming the file and the key: ``policy.toml: targets[1]: ...``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleetaudit.durations import parse_duration
from fleetaudit.errors import UsageError
from fleetaudit.filecheck import open_regular_file


def read_toml(path: Path) -> dict[str, Any]:
    """The document in `path`; an unreadable or invalid file (or no regular file: a FIFO
    would block) is a UsageError naming it."""
    try:
        with open_regular_file(path) as file:
            return tomllib.load(file)
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not valid UTF-8") from None


def key_error(where: Path | str, key: str, problem: str) -> UsageError:
    """The error for one key of a file: ``FILE: KEY: PROBLEM``."""
    return UsageError(f"{where}: {key}: {problem}")


def reject_unknown(
    where: Path | str, prefix: str, table: Mapping[str, object], known: set[str]
) -> None:
    """Refuse a key that is not in `known`, naming it and listing what is accepted."""
    for name in table:
        if name not in known:
            key = f"{prefix}.{name}" if prefix else name
            raise key_error(where, key, f"unknown key; expected one of {', '.join(sorted(known))}")


def string(where: Path | str, key: str, raw: object) -> str:
    """A non-empty string, stripped."""
    if not isinstance(raw, str) or not raw.strip():
        raise key_error(where, key, "must be a non-empty string")
    return raw.strip()


def optional_string(where: Path | str, key: str, raw: object) -> str | None:
    """A non-empty string, or None when the key is absent."""
    return None if raw is None else string(where, key, raw)


def duration(where: Path | str, key: str, raw: object) -> int:
    """Seconds of a duration string such as ``"24h"``."""
    if not isinstance(raw, str):
        raise key_error(where, key, 'must be a duration string such as "24h"')
    try:
        return parse_duration(raw)
    except ValueError as error:
        raise key_error(where, key, str(error)) from None
