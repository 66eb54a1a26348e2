"""The kinds of value a setting takes: each validates, says what it accepts, and shows itself.

A kind reads a TOML value (`from_toml`, paths resolve against the job file's directory) or a
command-line argument (`from_text`), raising ValueError with what it accepts; `to_json` is
how the manifest records it. Pure.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from fleetaudit.durations import epoch_ms, parse_duration, parse_iso8601

T = TypeVar("T")


class Kind(Protocol[T]):
    """What values a setting takes: parsed from TOML or from command-line text, and shown."""

    @property
    def accepts(self) -> str:
        """What is accepted, for error messages: 'a number from 0 to 1'."""

    def from_toml(self, raw: object, base: Path) -> T:
        """The value of a TOML value (paths resolve against `base`); ValueError if bad."""

    def from_text(self, text: str) -> T:
        """The value of a command-line argument; ValueError if bad."""

    def to_json(self, value: T) -> object:
        """The value as the manifest records it."""


class SubkeyError(ValueError):
    """A bad entry inside a table-valued setting: names the entry (`quotas.ListDevices`)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def _not_bool(raw: object, accepts: str) -> None:
    if isinstance(raw, bool):
        raise ValueError(f"must be {accepts}")


def _text_of(raw: object, accepts: str) -> str:
    """A TOML value that must be a string (every textual kind starts with this)."""
    if not isinstance(raw, str):
        raise ValueError(f"must be {accepts}")
    return raw


@dataclass(frozen=True)
class Number:
    """A finite number in a range; `low_open` excludes the low end ("greater than 0")."""

    low: float
    high: float
    low_open: bool = False

    @property
    def accepts(self) -> str:
        if self.low_open:
            return f"a number greater than {self.low:g} and at most {self.high:g}"
        return f"a number from {self.low:g} to {self.high:g}"

    def from_toml(self, raw: object, base: Path) -> float:
        _not_bool(raw, self.accepts)
        if not isinstance(raw, int | float):
            raise ValueError(f"must be {self.accepts}")
        return self._check(float(raw))

    def from_text(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"must be {self.accepts}") from None
        return self._check(value)

    def _check(self, value: float) -> float:
        below = value <= self.low if self.low_open else value < self.low
        if not math.isfinite(value) or below or value > self.high:
            raise ValueError(f"must be {self.accepts}")
        return value

    def to_json(self, value: float) -> object:
        return value


@dataclass(frozen=True)
class Whole:
    """A whole number in a range."""

    low: int
    high: int

    @property
    def accepts(self) -> str:
        return f"a whole number from {self.low} to {self.high}"

    def from_toml(self, raw: object, base: Path) -> int:
        _not_bool(raw, self.accepts)
        if not isinstance(raw, int):
            raise ValueError(f"must be {self.accepts}")
        return self._check(raw)

    def from_text(self, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"must be {self.accepts}") from None
        return self._check(value)

    def _check(self, value: int) -> int:
        if not self.low <= value <= self.high:
            raise ValueError(f"must be {self.accepts}")
        return value

    def to_json(self, value: int) -> object:
        return value


@dataclass(frozen=True)
class Text:
    """A non-empty string, stripped."""

    accepts: str = "a non-empty string"

    def from_toml(self, raw: object, base: Path) -> str:
        return self.from_text(_text_of(raw, self.accepts))

    def from_text(self, text: str) -> str:
        if not text.strip():
            raise ValueError(f"must be {self.accepts}")
        return text.strip()

    def to_json(self, value: str) -> object:
        return value


@dataclass(frozen=True)
class Choice:
    """One of a few words; `upper` folds the input to upper case, else to lower case."""

    choices: tuple[str, ...]
    upper: bool = False

    @property
    def accepts(self) -> str:
        return f"one of {', '.join(self.choices)}"

    def from_toml(self, raw: object, base: Path) -> str:
        return self.from_text(_text_of(raw, self.accepts))

    def from_text(self, text: str) -> str:
        value = text.strip().upper() if self.upper else text.strip().lower()
        if value not in self.choices:
            raise ValueError(f"must be {self.accepts}")
        return value

    def to_json(self, value: str) -> object:
        return value


@dataclass(frozen=True)
class Choices:
    """Several of a few words, at least one: a TOML list, or comma-separated text."""

    choices: tuple[str, ...]
    upper: bool = False

    @property
    def accepts(self) -> str:
        return f"one or more of {', '.join(self.choices)}"

    def from_toml(self, raw: object, base: Path) -> tuple[str, ...]:
        if isinstance(raw, str):
            return self.from_text(raw)
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            raise ValueError(f"must be {self.accepts}")
        return self._chosen(list(raw))

    def from_text(self, text: str) -> tuple[str, ...]:
        return self._chosen(text.split(","))

    def to_json(self, value: tuple[str, ...]) -> object:
        return list(value)

    def _chosen(self, words: list[str]) -> tuple[str, ...]:
        folded = [w.strip().upper() if self.upper else w.strip().lower() for w in words]
        chosen = tuple(dict.fromkeys(w for w in folded if w))
        unknown = [w for w in chosen if w not in self.choices]
        if not chosen or unknown:
            raise ValueError(f"must be {self.accepts}")
        return chosen


@dataclass(frozen=True)
class Flag:
    """True or false; on the command line a flag that sets it true."""

    accepts: str = "true or false"

    def from_toml(self, raw: object, base: Path) -> bool:
        if not isinstance(raw, bool):
            raise ValueError(f"must be {self.accepts}")
        return raw

    def from_text(self, text: str) -> bool:
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        try:
            return words[text.strip().lower()]
        except KeyError:
            raise ValueError(f"must be {self.accepts}") from None

    def to_json(self, value: bool) -> object:
        return value


@dataclass(frozen=True)
class Url:
    """An http:// or https:// URL with a host (and, if given, a port from 1 to 65535)."""

    accepts: str = "an http:// or https:// URL with a host, e.g. https://iot.example.com/"

    def from_toml(self, raw: object, base: Path) -> str:
        return self.from_text(_text_of(raw, self.accepts))

    def from_text(self, text: str) -> str:
        text = text.strip()
        try:
            parts = urlsplit(text)
            port = parts.port  # raises ValueError when out of range or not a number
        except ValueError:
            raise ValueError(f"must be {self.accepts}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
            raise ValueError(f"must be {self.accepts}")
        return text

    def to_json(self, value: str) -> object:
        return value


@dataclass(frozen=True)
class PathValue:
    """A file or directory path; in a job file, relative to the file's directory."""

    accepts: str = "a path"

    def from_toml(self, raw: object, base: Path) -> Path:
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("must be a non-empty path string")
        # normpath keeps `jobs/../out` readable as `out` in messages and the manifest.
        return Path(os.path.normpath(base / Path(raw.strip()).expanduser()))

    def from_text(self, text: str) -> Path:
        if not text.strip():
            raise ValueError("must be a non-empty path")
        return Path(text).expanduser()

    def to_json(self, value: Path) -> object:
        return str(value)


@dataclass(frozen=True)
class SampleSize:
    """How many devices a sample holds: a count, or a percentage of its population."""

    accepts: str = 'a whole number of devices from 1, or a percentage such as "2%"'

    def from_toml(self, raw: object, base: Path) -> str:
        _not_bool(raw, self.accepts)
        if isinstance(raw, int):
            return self.from_text(str(raw))
        return self.from_text(_text_of(raw, self.accepts))

    def from_text(self, text: str) -> str:
        text = text.strip()
        try:
            if text.endswith("%"):
                percent = float(text[:-1])
                if not 0 < percent <= 100:
                    raise ValueError
                return f"{percent:g}%"
            if int(text) >= 1:
                return str(int(text))
        except ValueError:
            pass
        raise ValueError(f"must be {self.accepts}")

    def to_json(self, value: str) -> object:
        return value


@dataclass(frozen=True)
class QuotaStore:
    """Where the shared quota schedule is kept: "off", a redis:// URL, or a directory."""

    accepts: str = '"off", a redis://host:port/db URL, or a directory'

    def from_toml(self, raw: object, base: Path) -> str:
        text = _text_of(raw, self.accepts).strip()
        if text and text != "off" and not is_redis(text):
            return str(PathValue().from_toml(text, base))
        return self.from_text(text)

    def from_text(self, text: str) -> str:
        text = text.strip()
        if not text:
            raise ValueError(f"must be {self.accepts}")
        if is_redis(text):
            try:
                parts = urlsplit(text)
                parts.port  # noqa: B018 - raises ValueError for a port that is not one
            except ValueError:
                raise ValueError(
                    f"must be {self.accepts}: the URL's port is not a number"
                ) from None
            if parts.scheme != "unix" and not parts.hostname:
                raise ValueError(f"must be {self.accepts}: the URL has no host")
            if importlib.util.find_spec("redis") is None:
                raise ValueError(
                    "a Redis store needs the redis extra: pip install 'fleetaudit[redis]'"
                )
        return text if text == "off" or is_redis(text) else str(Path(text).expanduser())

    def to_json(self, value: str) -> object:
        return shown_store(value)


def is_redis(store: str) -> bool:
    """Whether a quota_store value names a Redis server."""
    return store.startswith(("redis://", "rediss://", "unix://"))


def shown_store(store: str) -> str:
    """A store as messages and the manifest show it: a Redis URL without its password, in
    the user part or as a `password=` query parameter (redis-py reads both)."""
    if not is_redis(store):
        return store
    parts = urlsplit(store)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}" if ":" in user else netloc
    query = "&".join(
        f"{key}=***" if key.lower() == "password" else f"{key}={value}" if sep else key
        for key, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    shown = urlunsplit(parts._replace(netloc=netloc, query=query))
    # urlunsplit writes `unix:/path` for `unix:///path`; keep the form the user gave.
    if not parts.netloc and store.startswith(f"{parts.scheme}://"):
        shown = f"{parts.scheme}://{shown.removeprefix(parts.scheme + ':')}"
    return shown


@dataclass(frozen=True)
class Moment:
    """A date and time (ISO 8601, or a TOML datetime) -> UTC epoch milliseconds."""

    accepts: str = "an ISO 8601 date and time, e.g. 2024-11-19T09:47:43Z"

    def from_toml(self, raw: object, base: Path) -> int:
        # An unquoted TOML datetime arrives already parsed; a quoted one is ISO 8601 text.
        if isinstance(raw, dt.datetime):
            return epoch_ms(raw)
        if isinstance(raw, str):
            return self.from_text(raw)
        raise ValueError(f"must be {self.accepts}")

    def from_text(self, text: str) -> int:
        return parse_iso8601(text)

    def to_json(self, value: int) -> object:
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Duration:
    """A duration such as "30m", "6h", "1d12h" -> whole seconds."""

    accepts: str = 'a duration such as "30m", "6h" or "1d12h"'

    def from_toml(self, raw: object, base: Path) -> int:
        return self.from_text(_text_of(raw, self.accepts))

    def from_text(self, text: str) -> int:
        return parse_duration(text)

    def to_json(self, value: int) -> object:
        return value


@dataclass(frozen=True)
class PerName:
    """A table of name = number, the names from a fixed set (e.g. a quota per action)."""

    names: tuple[str, ...]
    value: Number

    @property
    def accepts(self) -> str:
        return f"a table of name = {self.value.accepts}, names from {', '.join(self.names)}"

    def from_toml(self, raw: object, base: Path) -> Mapping[str, float]:
        if not isinstance(raw, dict):
            raise ValueError(f"must be {self.accepts}")
        values: dict[str, float] = {}
        for name, number in raw.items():
            if name not in self.names:
                raise SubkeyError(name, f"unknown name; use {', '.join(self.names)}")
            try:
                values[name] = self.value.from_toml(number, base)
            except ValueError as error:
                raise SubkeyError(name, str(error)) from None
        return MappingProxyType(values)

    def from_text(self, text: str) -> Mapping[str, float]:
        raise ValueError("can only be set in a job file")

    def to_json(self, value: Mapping[str, float]) -> object:
        return dict(value)
