"""Device lists in: CSV, JSONL and Parquet files streamed as `Device`s, validated, deduplicated.

A file is never held in memory: rows are read one at a time (Parquet in batches), and
duplicates are caught with a set of 8-byte digests rather than the names themselves, so a
list of a million devices stays small. Every problem is an `InputError` naming the file,
the line (the row number for Parquet) and the column.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fleetaudit.errors import InputError
from fleetaudit.filecheck import open_regular_file
from fleetaudit.models import Device

_REQUIRED = ("product_key", "device_name")
_BATCH_ROWS = 8_192
# The longest line a CSV or JSONL list may have, its line ending included. The API pages
# give no limit; the platform's names are short (a ProductKey is 11 characters, a
# DeviceName at most 32 on the Alibaba-compatible API, an IotId about 30), so a line of a
# few such fields, even with extra export columns, stays far below this. A longer line is
# a broken file: it is refused having read at most this many bytes (a 1 GiB line used to
# be read whole: 2.2 GB peak for CSV, 15.8 GB for JSONL).
MAX_LINE_BYTES = 8_192
# The longest value of product_key, device_name or iot_id, in every format alike.
MAX_FIELD_CHARS = 256
# C0 controls and DEL: never part of a name; a sign of a damaged or binary export.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _canonical(name: str) -> str | None:
    """The field a column name means: case and underscores are ignored (ProductKey, iotid)."""
    folded = name.strip().replace("_", "").lower()
    return {"productkey": "product_key", "devicename": "device_name", "iotid": "iot_id"}.get(folded)


@dataclass(frozen=True, slots=True)
class DeviceListCheck:
    """What one full pass over a device list found."""

    rows: int  # device rows (blank lines not counted)
    unique: int  # distinct (product_key, device_name)

    @property
    def has_duplicates(self) -> bool:
        return self.rows != self.unique


def read_devices(path: str | Path, *, unique: bool = True) -> Iterator[Device]:
    """Each device in a `.csv`, `.jsonl` or `.parquet` list, in file order.

    With `unique` (the default) a device listed twice is yielded once; that costs a set of
    8-byte digests, which a caller that knows the list has no duplicates can skip.
    """
    path = Path(path)
    readers = {".csv": _read_csv, ".jsonl": _read_jsonl, ".parquet": _read_parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            str(path),
            None,
            None,
            f"unknown extension {path.suffix!r}: use .csv, .jsonl or .parquet",
        )
    rows = reader(path)
    return _unique(rows) if unique else rows


def validate_device_list(path: str | Path) -> DeviceListCheck:
    """Read the whole list once, raising on the first bad row; how many rows and devices."""
    rows = 0

    def counted(devices: Iterable[Device]) -> Iterator[Device]:
        nonlocal rows
        for device in devices:
            rows += 1
            yield device

    unique = sum(1 for _ in _unique(counted(read_devices(path, unique=False))))
    return DeviceListCheck(rows=rows, unique=unique)


def _unique(devices: Iterable[Device]) -> Iterator[Device]:
    # 64-bit digests: a collision among a million devices has odds of about 1 in 36 million.
    seen: set[int] = set()
    for device in devices:
        key = f"{device.product_key}\x00{device.device_name}".encode()
        digest = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
        if digest not in seen:
            seen.add(digest)
            yield device


def _open(path: Path) -> IO[bytes]:
    # A regular file only: a FIFO would block open() (and the run holding OUT/.lock).
    return open_regular_file(path)


def _lines(path: Path, file: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number, text) per line, decoded strictly so a bad byte names its line.

    Each read is bounded (`readline` with a limit), so memory stays flat whatever the file.
    """
    number = 0
    while raw := file.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            problem = f"line longer than {MAX_LINE_BYTES} bytes: not a device list line"
            raise InputError(str(path), number, None, problem)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(str(path), number, None, "not valid UTF-8") from None
        # Spreadsheet exports often start with a byte order mark; it is not part of a name.
        yield number, text.removeprefix("\ufeff") if number == 1 else text


def _fields(path: Path, line: int | None, names: Iterable[str]) -> dict[str, str]:
    """field -> the column name as the file spells it; every required field present."""
    found: dict[str, str] = {}
    for name in names:
        field = _canonical(name)
        if field is None:
            continue
        if field in found:
            raise InputError(
                str(path), line, name, f"same column as {found[field]!r}: give it once"
            )
        found[field] = name
    for field in _REQUIRED:
        if field not in found:
            raise InputError(str(path), line, field, "missing required column")
    return found


def _device(path: Path, line: int, values: dict[str, object], names: dict[str, str]) -> Device:
    """A Device from field -> raw value, checking types and emptiness."""
    clean: dict[str, str | None] = {}
    for field, raw in values.items():
        if raw is None:
            clean[field] = None
            continue
        if not isinstance(raw, str):
            problem = f"must be a string, found {type(raw).__name__}"
            raise InputError(str(path), line, names[field], problem)
        if len(raw) > MAX_FIELD_CHARS:
            problem = f"longer than {MAX_FIELD_CHARS} characters ({len(raw)})"
            raise InputError(str(path), line, names[field], problem)
        if _CONTROL.search(raw):
            raise InputError(str(path), line, names[field], "contains a control character")
        clean[field] = raw.strip() or None
    for field in _REQUIRED:
        if clean.get(field) is None:
            raise InputError(str(path), line, names[field], "empty value")
    return Device(
        product_key=clean["product_key"] or "",
        device_name=clean["device_name"] or "",
        iot_id=clean.get("iot_id"),
    )


def _read_csv(path: Path) -> Iterator[Device]:
    with _open(path) as file:
        # One text per physical line, so the reader's line_num is the file's line number.
        rows = csv.reader((text for _, text in _lines(path, file)), strict=True)
        try:
            header = next(rows, None)
            if header is None:
                raise InputError(str(path), 1, None, "empty file: expected a header row")
            names = _fields(path, 1, header)
            index = {field: header.index(name) for field, name in names.items()}
            for row in rows:
                line = rows.line_num
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                if len(row) != len(header):
                    problem = f"expected {len(header)} fields, found {len(row)}"
                    raise InputError(str(path), line, None, problem)
                values: dict[str, object] = {field: row[i] for field, i in index.items()}
                yield _device(path, line, values, names)
        except csv.Error as error:
            raise InputError(str(path), rows.line_num, None, f"bad CSV: {error}") from None


def _read_jsonl(path: Path) -> Iterator[Device]:
    with _open(path) as file:
        for line, text in _lines(path, file):
            if not text.strip():
                continue
            try:
                record = orjson.loads(text)
            except orjson.JSONDecodeError as error:
                raise InputError(str(path), line, None, f"invalid JSON: {error}") from None
            if not isinstance(record, dict):
                found = type(record).__name__
                raise InputError(str(path), line, None, f"expected a JSON object, found {found}")
            names = _fields(path, line, record)
            yield _device(path, line, {f: record[n] for f, n in names.items()}, names)


def _read_parquet(path: Path) -> Iterator[Device]:
    file = _open(path)
    try:
        parquet = pq.ParquetFile(file)
    except (OSError, pa.ArrowException) as error:
        file.close()
        raise InputError(str(path), None, None, f"not a readable Parquet file: {error}") from None
    with file, parquet:
        schema = parquet.schema_arrow
        names = _fields(path, None, schema.names)
        for name in names.values():
            kind = schema.field(name).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise InputError(str(path), None, name, f"must be a string column, found {kind}")
        fields = list(names)
        row = 0
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=list(names.values())):
            columns = [batch.column(names[field]).to_pylist() for field in fields]
            for values in zip(*columns, strict=True):
                row += 1
                yield _device(path, row, dict(zip(fields, values, strict=True)), names)


def product_counts(path: str | Path) -> dict[str, int]:
    """How many distinct devices of each product the list holds (the sweep and the plan)."""
    counts: dict[str, int] = {}
    for device in read_devices(path):
        counts[device.product_key] = counts.get(device.product_key, 0) + 1
    return counts
