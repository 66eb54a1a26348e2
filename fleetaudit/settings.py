"""Settings declared once: a row each, from which the CLI, job files and the manifest derive.

A settings class is a frozen dataclass whose fields are declared with `setting(...)`: the
field's name is the job-file key, its annotation the type, and the row holds the default,
the command-line flag, the help text, the value kind (setting_kinds.py: it validates and
says what it accepts) and whether the manifest records it. From those rows this module
derives:

- `add_options(parser, cls)`: the argparse options (every value read as text, so that a bad
  value is our usage error naming the setting, not argparse's);
- `table_values(cls, table, where=..., base=...)`: a job-file table -> the values it sets
  (an unknown key or a wrong type is a `UsageError` naming the file and the key);
- `option_values(cls, args)`: the values the command line set;
- `build(cls, *layers)`: the settings, each later layer overriding the earlier ones;
- `manifest_values(obj)`: the settings the manifest records, as JSON values;
- `identity_values(obj)`: the settings that change what a run finds (a resume checks them).

`Section` nests a settings class as a table (`[gate]`). Pure: nothing here reads a file.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from fleetaudit.errors import UsageError
from fleetaudit.setting_kinds import (
    Choice,
    Choices,
    Duration,
    Flag,
    Kind,
    Moment,
    Number,
    PathValue,
    PerName,
    QuotaStore,
    SampleSize,
    SubkeyError,
    Text,
    Url,
    Whole,
    shown_store,
)

# Re-exported: config.py declares its rows with these kinds.
__all__ = [
    "Choice",
    "Choices",
    "Duration",
    "Flag",
    "Moment",
    "Number",
    "PathValue",
    "PerName",
    "QuotaStore",
    "SampleSize",
    "Section",
    "Text",
    "Url",
    "Whole",
]

T = TypeVar("T")
_ROW = "fleetaudit.setting"


@dataclass(frozen=True)
class Row(Generic[T]):
    """One setting: everything about it but its name (the field's) and type (its annotation)."""

    kind: Kind[T]
    help: str
    flag: str | None = None  # the command-line option; None: job file only
    metavar: str | None = None
    manifest: bool = True  # whether manifest.json's `config` records it
    required: bool = False  # a run cannot start without it (its default is None)
    # It changes what a run finds: a resumed run must have the same value (pipeline.py).
    identity: bool = False


def setting(
    kind: Kind[Any],
    help: str,
    *,
    default: Any = None,
    flag: str | None = None,
    metavar: str | None = None,
    manifest: bool = True,
    required: bool = False,
    identity: bool = False,
) -> Any:
    """Declare one setting as a dataclass field (see the module docstring)."""
    row = Row(kind, help, flag, metavar, manifest, required, identity)
    if isinstance(default, dict):
        frozen = MappingProxyType(default)
        return dataclasses.field(default_factory=lambda: frozen, metadata={_ROW: row})
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata={_ROW: row})
    return dataclasses.field(default=default, metadata={_ROW: row})


def rows(cls: type[Any]) -> dict[str, Row[Any]]:
    """Every setting of a settings class, by name, in declaration order."""
    return {f.name: f.metadata[_ROW] for f in dataclasses.fields(cls) if _ROW in f.metadata}


# ---------------------------------------------------------------------------- derivations


def table_values(
    cls: type[Any], table: Mapping[str, object], *, where: str, base: Path, prefix: str = ""
) -> dict[str, Any]:
    """The settings a (job-file) table sets; a bad key or value names `where` and the key."""
    known = rows(cls)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        name = f"{prefix}{key}"
        row = known.get(key)
        if row is None:
            expected = ", ".join(sorted(known))
            raise UsageError(f"{where}: {name}: unknown key; expected one of {expected}")
        try:
            if isinstance(row.kind, Section):
                values[key] = row.kind.from_table(raw, where=where, base=base, prefix=f"{name}.")
            else:
                values[key] = row.kind.from_toml(raw, base)
        except SubkeyError as error:
            raise UsageError(f"{where}: {name}.{error.key}: {error.problem}") from None
        except ValueError as error:
            raise UsageError(f"{where}: {name}: {error}") from None
    return values


def add_options(
    parser: argparse.ArgumentParser, cls: type[Any], only: Sequence[str] | None = None
) -> None:
    """An option for every setting of `cls` that has a flag (or only those named)."""
    for name, row in rows(cls).items():
        if row.flag is None or (only is not None and name not in only):
            continue
        if isinstance(row.kind, Flag):
            parser.add_argument(
                row.flag, dest=name, action="store_true", default=None, help=row.help
            )
        else:
            metavar = row.metavar or "VALUE"
            parser.add_argument(row.flag, dest=name, metavar=metavar, default=None, help=row.help)


def option_values(cls: type[Any], args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line set; a bad value is a UsageError naming the option."""
    values: dict[str, Any] = {}
    for name, row in rows(cls).items():
        raw = getattr(args, name, None)
        if row.flag is None or raw is None:
            continue
        if isinstance(row.kind, Flag):
            values[name] = bool(raw)
            continue
        try:
            values[name] = row.kind.from_text(raw)
        except ValueError as error:
            # A Redis URL may carry a password: a bad one is echoed without it.
            shown = shown_store(raw) if isinstance(row.kind, QuotaStore) else raw
            raise UsageError(f"{row.flag} {shown!r}: {error}") from None
    return values


def build(cls: type[T], *layers: Mapping[str, Any]) -> T:
    """The settings with each layer's values over the defaults (later layers win)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return cls(**merged)


def missing_required(obj: object) -> list[str]:
    """The required settings `obj` leaves unset."""
    return [
        name for name, row in rows(type(obj)).items() if row.required and getattr(obj, name) is None
    ]


def manifest_values(obj: object) -> dict[str, Any]:
    """The settings of `obj` that the manifest records, as JSON values (None stays null)."""
    out: dict[str, Any] = {}
    for name, row in rows(type(obj)).items():
        if row.manifest:
            value = getattr(obj, name)
            out[name] = None if value is None else row.kind.to_json(value)
    return out


def identity_values(obj: object) -> dict[str, Any]:
    """The settings of `obj` that change what a run finds, as JSON values."""
    return {
        name: None if (value := getattr(obj, name)) is None else row.kind.to_json(value)
        for name, row in rows(type(obj)).items()
        if row.identity
    }


def describe(cls: type[Any]) -> list[tuple[str, str | None, str, str, object]]:
    """(name, flag, accepts, help, default) of every setting: for docs and their test."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: list[tuple[str, str | None, str, str, object]] = []
    for name, row in rows(cls).items():
        field = fields[name]
        default = (
            field.default_factory()
            if field.default_factory is not dataclasses.MISSING
            else field.default
        )
        out.append((name, row.flag, row.kind.accepts, row.help, default))
    return out


@dataclass(frozen=True)
class Section(Generic[T]):
    """A sub-table (e.g. `[gate]`) parsed into its own settings class by the same rows."""

    cls: type[T]

    @property
    def accepts(self) -> str:
        return "a table"

    def from_table(self, raw: object, *, where: str, base: Path, prefix: str) -> T:
        if not isinstance(raw, dict):
            raise ValueError(f"must be a table ([{prefix.rstrip('.')}])")
        value = build(self.cls, table_values(self.cls, raw, where=where, base=base, prefix=prefix))
        check = getattr(value, "check", None)
        if check is not None:
            try:
                check()
            except ValueError as error:
                raise UsageError(f"{where}: {prefix}{error}") from None
        return value

    def from_toml(self, raw: object, base: Path) -> T:
        return self.from_table(raw, where="job file", base=base, prefix="")

    def from_text(self, text: str) -> T:
        raise ValueError("can only be set in a job file")

    def to_json(self, value: T) -> object:
        return manifest_values(value)
