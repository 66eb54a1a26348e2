"""Two runs compared part by part: the devices are split by the end of their names, and only
one part of each run's tables is read (streamed from Parquet) and compared at a time.

A comparison needs both runs' findings, devices and module versions side by side; for a
fleet of a million devices that is gigabytes, so the device space is cut into parts of
about `PART_DEVICES` devices each (by the last two characters of the device name: cheap to
evaluate on each batch read, and even for serial-numbered names) and `changes.compare_runs`
(pure) runs on each. Every device falls in exactly one part (the last part takes every
ending the plan did not list), so the parts add up to the whole. Parts are only as even as
the endings: names that all end alike make one part (correct, but not bounded); a hash of
the name would fix that once Arrow offers one to compute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fleetaudit.report.changes import RunSide, compare_runs
from fleetaudit.report.runs import SIDE_COLUMNS, PublishedRun
from fleetaudit.report.schema import schema_for
from fleetaudit.terms import Table

# Devices per part: the comparison's memory is about this many devices' rows of two runs
# (BENCHMARKS.md: 10k keeps a 100k-device run's end within ~60 MB of its collecting phase;
# each part reads every file once more, about 0.3 s per part at 100k devices).
PART_DEVICES = 10_000
_ENDING = 2  # characters of the device name that choose its part
_BATCH = 16_384  # rows decoded at a time


@dataclass(frozen=True)
class DevicePart:
    """Devices whose names end in one of `endings`, or (`endings` None) in none of `planned`."""

    endings: tuple[str, ...] | None
    planned: tuple[str, ...] = ()

    def mask(self, device_names: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """Which of `device_names` belong to this part (a null name to the last part)."""
        ending = pc.utf8_slice_codeunits(device_names, start=-_ENDING, stop=2**31 - 1)
        if self.endings is not None:
            return pc.fill_null(
                pc.is_in(ending, value_set=pa.array(self.endings, pa.string())), False
            )
        planned = pc.is_in(ending, value_set=pa.array(self.planned, pa.string()))
        return pc.fill_null(pc.invert(planned), True)


@dataclass(frozen=True)
class Source:
    """Where one run's tables are: `files(table)` lists the Parquet files holding it."""

    run_id: str
    started_at_ms: int
    files: Callable[[str], Sequence[Path]]
    has_changes: bool

    def read(
        self,
        table: str,
        columns: Sequence[str],
        part: DevicePart | None,
        keep: Callable[[pa.RecordBatch], pa.Array] | None = None,
    ) -> pa.Table:
        """The rows of `table` in `part` (all rows: None) that `keep` keeps, only `columns`,
        read batch by batch: memory holds the rows kept and one batch, never a whole file.
        `keep` sees `columns`."""
        full = schema_for(table)
        schema = pa.schema([full.field(column) for column in columns])
        wanted = list(dict.fromkeys([*columns, *([] if part is None else ["device_name"])]))
        kept = []
        for path in self.files(table):
            batches = pq.ParquetFile(path, pre_buffer=False).iter_batches(
                batch_size=_BATCH, columns=wanted, use_threads=False
            )
            for batch in batches:
                if part is not None:
                    batch = batch.filter(part.mask(batch.column("device_name")))
                if keep is not None:
                    batch = batch.filter(keep(batch))
                kept.append(batch.select(list(columns)).cast(schema))
        return pa.Table.from_batches(kept, schema=schema)


def published_source(run: PublishedRun) -> Source:
    """A published run as a comparison reads it."""

    def files(table: str) -> list[Path]:
        return [run.path / f"{table}.parquet"] if run.has_table(table) else []

    return Source(run.run_id, run.started_at_ms, files, run.has_table(Table.CHANGES))


def device_parts(current: Source, part_devices: int = PART_DEVICES) -> list[DevicePart]:
    """Parts of about `part_devices` devices of `current` each; the last part holds every
    ending not planned (devices only an earlier run has)."""
    names = current.read(Table.DEVICES, ["device_name"], None)["device_name"]
    ending = pc.utf8_slice_codeunits(names, start=-_ENDING, stop=2**31 - 1)
    counts = pc.value_counts(ending).to_pylist()
    parts: list[list[str]] = [[]]
    size = 0
    for entry in sorted(counts, key=lambda e: str(e["values"])):
        if entry["values"] is None:
            continue
        if parts[-1] and size + entry["counts"] > part_devices:
            parts.append([])
            size = 0
        parts[-1].append(entry["values"])
        size += entry["counts"]
    planned = tuple(value for part in parts for value in part)
    return [*(DevicePart(tuple(part)) for part in parts if part), DevicePart(None, planned)]


def _side(source: Source, where: DevicePart) -> RunSide:
    return RunSide(
        run_id=source.run_id,
        started_at_ms=source.started_at_ms,
        findings=source.read(Table.FINDINGS, SIDE_COLUMNS[Table.FINDINGS], where),
        devices=source.read(Table.DEVICES, SIDE_COLUMNS[Table.DEVICES], where),
        module_versions=source.read(
            Table.MODULE_VERSIONS, SIDE_COLUMNS[Table.MODULE_VERSIONS], where
        ),
        changes=(
            source.read(Table.CHANGES, SIDE_COLUMNS[Table.CHANGES], where)
            if source.has_changes
            else None
        ),
    )


def compare_part(current: Source, previous: Source | None, where: DevicePart) -> pa.Table:
    """The changes rows of the devices `where` keeps (one of `device_parts`)."""
    return compare_runs(
        _side(current, where), _side(previous, where) if previous is not None else None
    )


def compare_in_parts(current: Source, previous: Source | None) -> Iterator[pa.Table]:
    """The changes table of `current` against `previous`, one part at a time."""
    for where in device_parts(current):
        yield compare_part(current, previous, where)
        release_memory()


def release_memory() -> None:
    """Give the memory of a finished part back (the allocator would keep it for reuse,
    and the peak RSS of a run is what an operator sizes the machine for)."""
    pa.default_memory_pool().release_unused()
