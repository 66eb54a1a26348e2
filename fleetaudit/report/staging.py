"""Run output on disk: staged parts, the resume journal, atomic finalize and `LATEST`.

The only module that writes a run's files. A run lives in `OUT/.staging/RUN_ID/` until it
is complete:

    meta.json          run id, schema version and the caller's settings (written once)
    journal.jsonl      one line per commit naming that commit's part files (and its tag)
    parts/NNNNNN.TABLE.parquet
    final/             built by finalize, then renamed to OUT/run_date=D/run_id=RUN_ID

Crash safety comes from ordering, not from cleanup: a commit writes and fsyncs its parts
(and the parts directory) before it appends and fsyncs the journal line naming them, so
any part the journal names is durable and any part it does not name is garbage from an
interrupted commit, deleted on open. A torn last journal line (the process died inside
the append) is cut off on open. Finalize builds the run directory beside the parts, fsyncs
it, renames it into place (one atomic step that makes it visible), then replaces `LATEST`
(only for a run whose coverage met the minimum: `LATEST` is the newest run you can trust).
Only names matching `run_date=*` are ever complete runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fleetaudit.errors import UsageError
from fleetaudit.report.schema import RUN_TABLES, SCHEMA_VERSION, rows_to_batch, schema_for

STAGING_DIR = ".staging"
LATEST = "LATEST"
# A staged run that a resume must not continue (other inputs, another schema) is renamed
# to RUN_ID + this, kept for a look and removed with the other stale staging after a week.
SET_ASIDE = ".set-aside"
_META = "meta.json"
_JOURNAL = "journal.jsonl"
_PARTS = "parts"
_FINAL = "final"
# Finalize gathers small parts into row groups of about this many rows; memory stays
# bounded by one row group per table, whatever the size of the run.
_ROW_GROUP_ROWS = 128 * 1024
# Table names, actions and statuses are StrEnums (terms.py); as dict keys orjson writes them
# only with this option, as their plain text.
_JSON = orjson.OPT_NON_STR_KEYS


def run_date_of(run_id: str) -> str:
    """The `YYYY-MM-DD` partition of a run: the UTC date its run id says it started."""
    try:
        started = datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise ValueError(f"not a run id: {run_id!r}") from None
    return f"{started:%Y-%m-%d}"


def run_relpath(run_id: str) -> str:
    """Where a complete run lives, relative to OUT."""
    return f"run_date={run_date_of(run_id)}/run_id={run_id}"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step: temp file, fsync, rename, directory fsync."""
    _replace_atomic(path, lambda f: f.write(data))


def write_table_atomic(path: Path, data: pa.Table) -> None:
    """Write a Parquet file atomically (files added to a finished run: cancel plan, outcomes)."""
    _replace_atomic(path, lambda f: pq.write_table(data, f))


def latest_run(out: Path) -> Path | None:
    """The newest run you can trust (complete, its coverage met `min_coverage`), as named
    by `OUT/LATEST`; None when there is none."""
    try:
        rel = (out / LATEST).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    run_dir = out / rel
    return run_dir if rel and run_dir.is_dir() else None


def remove_stale_staging(out: Path, now_ms: int, max_age_s: int = 7 * 86400) -> list[Path]:
    """Delete staged runs untouched for more than `max_age_s`; returns what was removed."""
    root = out / STAGING_DIR
    if not root.is_dir():
        return []
    removed = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and now_ms / 1000 - _last_touched(entry) > max_age_s:
            shutil.rmtree(entry)
            removed.append(entry)
    return removed


@dataclass(frozen=True)
class SetAside:
    """A staged run that `--resume` would not continue: where it went, and why."""

    run_id: str
    path: Path
    reasons: tuple[str, ...]


class RunStaging:
    """One run being written: buffered rows, committed parts and the journal naming them."""

    def __init__(self, out: Path, run_id: str, meta: dict[str, Any]) -> None:
        self.out = out
        self.run_id = run_id
        self.path = out / STAGING_DIR / run_id
        self.meta = meta
        self._committed: list[dict[str, str]] = []  # per commit: table -> part file name
        self._tags: set[str] = set()  # tags of committed commits (see `commit`)
        self._pending: dict[str, list[pa.RecordBatch]] = {}

    def __repr__(self) -> str:
        return f"RunStaging(run_id={self.run_id!r}, commits={len(self._committed)})"

    @classmethod
    def create(cls, out: Path, run_id: str, meta: Mapping[str, Any]) -> RunStaging:
        """Start a new run under `OUT/.staging/RUN_ID/` with its settings saved in meta.json."""
        run_date_of(run_id)  # reject a malformed id before anything is written
        staging = cls(out, run_id, dict(meta))
        root = out / STAGING_DIR
        root.mkdir(parents=True, exist_ok=True)
        staging.path.mkdir()
        (staging.path / _PARTS).mkdir()
        (staging.path / _JOURNAL).touch()
        # meta.json is written last and atomically: a staging dir without it never started.
        staging.save_meta()
        _fsync_dir(root)
        return staging

    @classmethod
    def open(cls, out: Path, run_id: str) -> RunStaging:
        """Reopen a staged run: keep what the journal names, drop everything else."""
        path = out / STAGING_DIR / run_id
        record = orjson.loads((path / _META).read_bytes())
        if record.get("schema_version") != SCHEMA_VERSION:
            raise UsageError(
                f"run {run_id} was staged with schema_version {record.get('schema_version')}, "
                f"this fleetaudit writes {SCHEMA_VERSION}: it cannot be resumed"
            )
        staging = cls(out, run_id, record["meta"])
        staging._recover()
        return staging

    @classmethod
    def resume_newest(
        cls,
        out: Path,
        differences: Callable[[Mapping[str, Any]], list[str]] = lambda meta: [],
    ) -> RunStaging | Path | SetAside | None:
        """The newest staged run, reopened; None when there is none.

        `differences(meta)` says how the staged run's inputs differ from today's: such a run
        is set aside (so is one staged by another schema version) and returned as `SetAside`,
        never continued. A run that died after its rename into place is complete: its tidy-up
        is finished and its run directory returned (None if its inputs differ), so that a
        resume does not audit again.
        """
        root = out / STAGING_DIR
        if not root.is_dir():
            return None
        for entry in sorted(root.iterdir(), reverse=True):
            if entry.name.endswith(SET_ASIDE) or not (entry / _META).is_file():
                continue  # set aside, or died inside create(): nothing of it was committed
            record = orjson.loads((entry / _META).read_bytes())
            reasons = differences(record.get("meta", {}))
            published = out / run_relpath(entry.name)
            if published.is_dir():
                if _trusted(published):
                    _publish_latest(out, entry.name)
                shutil.rmtree(entry)
                return None if reasons else published
            if record.get("schema_version") != SCHEMA_VERSION:
                reasons.insert(
                    0, f"it was staged with schema_version {record.get('schema_version')}"
                )
            if reasons:
                return SetAside(entry.name, cls.set_aside(out, entry.name), tuple(reasons))
            return cls.open(out, entry.name)
        return None

    @staticmethod
    def set_aside(out: Path, run_id: str) -> Path:
        """Rename a staged run out of the way of `resume_newest`; returns its new path."""
        path = out / STAGING_DIR / run_id
        target = path.with_name(run_id + SET_ASIDE)
        if target.exists():
            shutil.rmtree(target)
        path.rename(target)
        _fsync_dir(path.parent)
        return target

    def save_meta(self) -> None:
        """Persist changes made to `meta` since create (atomically; a resume sees them)."""
        record = {"run_id": self.run_id, "schema_version": SCHEMA_VERSION, "meta": self.meta}
        write_atomic(self.path / _META, orjson.dumps(record, option=_JSON))

    def append(self, table: str, rows: Sequence[object]) -> None:
        """Buffer rows of a run table in memory until the next commit."""
        if table not in RUN_TABLES:
            raise ValueError(f"not a run table: {table!r}")
        if rows:
            self._pending.setdefault(table, []).append(rows_to_batch(table, rows))

    def append_table(self, table: str, data: pa.Table) -> None:
        """Buffer a whole Arrow table of a run table (its schema) until the next commit."""
        if table not in RUN_TABLES:
            raise ValueError(f"not a run table: {table!r}")
        if data.num_rows:
            self._pending.setdefault(table, []).extend(data.cast(schema_for(table)).to_batches())

    def commit(self, tag: str | None = None) -> None:
        """Make everything appended so far durable: parts first, then the journal line.

        A `tag` is recorded in the same journal line, so "this step's rows are committed"
        is known atomically with the rows themselves (see `committed_tags`).
        """
        if not self._pending:
            return
        seq = len(self._committed) + 1
        parts: dict[str, str] = {}
        rows: dict[str, int] = {}
        for table, batches in self._pending.items():
            name = f"{seq:06d}.{table}.parquet"
            data = pa.Table.from_batches(batches, schema=schema_for(table))
            _write_parquet(self.path / _PARTS / name, data)
            parts[table] = name
            rows[table] = data.num_rows
        _fsync_dir(self.path / _PARTS)
        entry: dict[str, object] = {"seq": seq, "parts": parts, "rows": rows}
        if tag is not None:
            entry["tag"] = tag
        line = orjson.dumps(entry, option=_JSON) + b"\n"
        with (self.path / _JOURNAL).open("ab") as journal:
            journal.write(line)
            journal.flush()
            os.fsync(journal.fileno())
        self._committed.append(parts)
        if tag is not None:
            self._tags.add(tag)
        self._pending.clear()

    def committed_files(self, table: str) -> list[Path]:
        """The committed part files of `table`, in commit order (for streaming readers)."""
        return [self.path / _PARTS / parts[table] for parts in self._committed if table in parts]

    def committed_tags(self) -> frozenset[str]:
        """The tags of every committed commit (an earlier session's included)."""
        return frozenset(self._tags)

    def committed_batches(self, table: str) -> Iterator[pa.RecordBatch]:
        """Every committed batch of `table`, in commit order (pending rows are not included)."""
        if table not in RUN_TABLES:
            raise ValueError(f"not a run table: {table!r}")
        for parts in self._committed:
            name = parts.get(table)
            if name is not None:
                yield from pq.ParquetFile(self.path / _PARTS / name).iter_batches()

    def finalize(
        self,
        manifest: Mapping[str, Any],
        *,
        trusted: bool = True,
        before_publish: Callable[[Path], None] | None = None,
    ) -> Path:
        """Publish the committed run as `OUT/run_date=D/run_id=RUN_ID`; returns that path.

        Rows still pending are committed first. `rows` (per table) is added to the manifest
        unless the caller set it. `before_publish(dir)` may add files (report.html) to the
        complete run directory before it becomes visible, so they appear with the tables.
        `LATEST` moves to the run only if it is `trusted` (its coverage met the minimum),
        so that readers of `LATEST` never get a run of errors.
        """
        self.commit()
        final = self.path / _FINAL
        if final.exists():
            shutil.rmtree(final)  # a finalize that died half-way: start it over
        final.mkdir()
        rows = {table: self._concatenate(table, final / f"{table}.parquet") for table in RUN_TABLES}
        document = dict(manifest)
        document.setdefault("rows", rows)
        write_atomic(
            final / "manifest.json", orjson.dumps(document, option=_JSON | orjson.OPT_INDENT_2)
        )
        if before_publish is not None:
            before_publish(final)
        _fsync_dir(final)

        target = self.out / run_relpath(self.run_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        _fsync_dir(self.out)
        final.rename(target)  # the single step that makes the run visible
        _fsync_dir(target.parent)
        if trusted:
            _publish_latest(self.out, self.run_id)
        shutil.rmtree(self.path)
        _fsync_dir(self.path.parent)
        return target

    def _concatenate(self, table: str, path: Path) -> int:
        schema = schema_for(table)
        total = 0
        with path.open("wb") as f:
            writer = pq.ParquetWriter(f, schema)
            try:
                group: list[pa.RecordBatch] = []
                group_rows = 0
                for batch in self.committed_batches(table):
                    group.append(batch)
                    group_rows += batch.num_rows
                    if group_rows >= _ROW_GROUP_ROWS:
                        writer.write_table(pa.Table.from_batches(group, schema=schema))
                        total += group_rows
                        group, group_rows = [], 0
                # An empty table still gets one (empty) row group so that it has its schema.
                if group or total == 0:
                    writer.write_table(pa.Table.from_batches(group, schema=schema))
                    total += group_rows
            finally:
                writer.close()
            f.flush()
            os.fsync(f.fileno())
        return total

    def _recover(self) -> None:
        journal = self.path / _JOURNAL
        data = journal.read_bytes()
        valid = 0
        for line in data.splitlines(keepends=True):
            entry = _parse_journal_line(line)
            if entry is None:
                break  # a torn append: it and anything after it never committed
            seq, parts, _, tag = entry
            if seq != len(self._committed) + 1:
                break
            self._committed.append(parts)
            if tag is not None:
                self._tags.add(tag)
            valid += len(line)
        if valid < len(data):
            with journal.open("r+b") as f:
                f.truncate(valid)
                f.flush()
                os.fsync(f.fileno())
        named = {name for parts in self._committed for name in parts.values()}
        for part in (self.path / _PARTS).iterdir():
            if part.name not in named:
                part.unlink()
        _fsync_dir(self.path / _PARTS)
        if (self.path / _FINAL).exists():
            shutil.rmtree(self.path / _FINAL)


def _parse_journal_line(
    line: bytes,
) -> tuple[int, dict[str, str], dict[str, int], str | None] | None:
    if not line.endswith(b"\n"):
        return None
    try:
        entry = orjson.loads(line)
        seq, parts, rows = entry["seq"], entry["parts"], entry["rows"]
        tag = entry.get("tag")
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    if not isinstance(seq, int) or not isinstance(parts, dict) or not isinstance(rows, dict):
        return None
    if not set(parts) <= set(RUN_TABLES) or set(rows) != set(parts):
        return None
    if tag is not None and not isinstance(tag, str):
        return None
    return seq, parts, rows, tag


def _trusted(run_dir: Path) -> bool:
    """Whether a published run may be named by `LATEST` (see `finalize`)."""
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    return bool(manifest.get("coverage_ok", True))


def _publish_latest(out: Path, run_id: str) -> None:
    # LATEST names the newest run by start time: a resumed older run finishing after a
    # newer one must not take LATEST back.
    current = latest_run(out)
    if current is not None and current.name.removeprefix("run_id=") > run_id:
        return
    # A process killed inside write_atomic leaves its temporary file behind; only the
    # holder of OUT/.lock writes LATEST, so any such file is an orphan.
    for orphan in out.glob(f".{LATEST}.*.tmp"):
        orphan.unlink(missing_ok=True)
    write_atomic(out / LATEST, f"{run_relpath(run_id)}\n".encode())


def _replace_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        # mkstemp creates the file 0600; a published file gets the mode open() would give
        # it, so that a reader running as another user (node_exporter) can read it.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only swap it, which
    would race with the threads that write files)."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)  # no /proc: swap and restore
    os.umask(current)
    return current


def _write_parquet(path: Path, data: pa.Table) -> None:
    with path.open("wb") as f:
        pq.write_table(data, f)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # A rename or a new file is durable only once its directory entry is.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_touched(path: Path) -> float:
    times = [path.stat().st_mtime]
    times += [p.stat().st_mtime for p in (path / _META, path / _JOURNAL) if p.exists()]
    return max(times)
