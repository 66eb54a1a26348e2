"""Committed rows read back: what a resumed run has done, and the end of a run's totals.

A resumed run skips the devices and lookups an earlier session committed; the end of a run
judges fleet-majority drift and counts rows for the manifest. Every reader streams the
committed parts batch by batch, so memory does not grow with the fleet.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from fleetaudit.audit.majority import VersionCounts, majority_drift_findings
from fleetaudit.models import Device, Firmware, Job, ModuleVersion, job_key
from fleetaudit.report.staging import RunStaging
from fleetaudit.terms import Action, Table

# Marks the journal lines that hold fleet-majority findings (see staging.commit).
MAJORITY_TAG = "majority_findings"
# Findings per majority commit: bounds the memory the end of a large run needs.
MAJORITY_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class CommittedLookups:
    """The firmware and jobs an earlier session wrote, and the lookups that failed for good."""

    firmware: list[Firmware] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    failed_firmware: set[str] = field(default_factory=set)
    failed_jobs: set[tuple[str, str]] = field(default_factory=set)


def committed_lookups(staging: RunStaging) -> CommittedLookups:
    """What the firmware, jobs and errors tables say was already looked up."""
    known = CommittedLookups()
    for batch in staging.committed_batches(Table.FIRMWARE):
        for row in batch.to_pylist():
            known.firmware.append(Firmware(**_epoch_ms(row, Firmware.__slots__)))
    for batch in staging.committed_batches(Table.JOBS):
        for row in batch.to_pylist():
            known.jobs.append(Job(**_epoch_ms(row, Job.__slots__)))
    for batch in staging.committed_batches(Table.ERRORS):
        for row in batch.select(["action", "firmware_id", "job_id"]).to_pylist():
            firmware_id, job_id = row["firmware_id"], row["job_id"]
            if row["action"] == Action.QUERY_FIRMWARE and firmware_id:
                known.failed_firmware.add(firmware_id)
            elif row["action"] == Action.LIST_JOBS and firmware_id and job_id:
                known.failed_jobs.add(job_key(firmware_id, job_id))
    return known


def _epoch_ms(row: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """A row read back from Parquet, with timestamps turned back into epoch milliseconds."""
    values: dict[str, Any] = {}
    for name in names:
        value = row.get(name)
        values[name] = round(value.timestamp() * 1000) if isinstance(value, datetime) else value
    return values


def committed_devices(staging: RunStaging) -> set[tuple[str, str]]:
    """(product_key, device_name) of every device already committed."""
    done: set[tuple[str, str]] = set()
    for batch in staging.committed_batches(Table.DEVICES):
        keys = batch.select(["product_key", "device_name"]).to_pydict()
        done.update(zip(keys["product_key"], keys["device_name"], strict=True))
    return done


def device_key(device: Device) -> tuple[str, str]:
    """A device as `committed_devices` names it."""
    return (device.product_key, device.device_name)


def _module_rows(staging: RunStaging) -> Iterator[ModuleVersion]:
    for batch in staging.committed_batches(Table.MODULE_VERSIONS):
        for row in batch.to_pylist():
            yield ModuleVersion(**{name: row[name] for name in ModuleVersion.__slots__})


def commit_majority_findings(staging: RunStaging, targeted: frozenset[tuple[str, str]]) -> None:
    """Fleet-majority drift needs the whole run: count first, then judge, both streamed.

    Findings are committed in numbered chunks, each tagged in the journal. The chunks are
    the same in every session (the module rows are all committed by now), so a session
    that died half way adds only the chunks it had not committed.
    """
    counts = VersionCounts()
    for batch in staging.committed_batches(Table.MODULE_VERSIONS):
        keys = ["product_key", "module_name", "module_version"]
        grouped = pa.Table.from_batches([batch]).group_by(keys).aggregate([([], "count_all")])
        for row in grouped.to_pylist():
            counts.add(
                row["product_key"], row["module_name"], row["module_version"], row["count_all"]
            )
    findings = majority_drift_findings(_module_rows(staging), counts, targeted)
    chunks = iter(lambda: list(itertools.islice(findings, MAJORITY_CHUNK)), [])
    done = staging.committed_tags()
    for number, chunk in enumerate(chunks):
        tag = f"{MAJORITY_TAG}:{number}"
        if tag not in done:
            staging.append(Table.FINDINGS, chunk)
            staging.commit(tag)


def value_counts(staging: RunStaging, table: Table, column: str) -> dict[str, int]:
    """How many committed rows of `table` hold each value of `column`."""
    counts: dict[str, int] = {}
    for batch in staging.committed_batches(table):
        for entry in pa.compute.value_counts(batch.column(column)).to_pylist():
            counts[str(entry["values"])] = counts.get(str(entry["values"]), 0) + entry["counts"]
    return counts


def finding_counts(staging: RunStaging) -> dict[tuple[str, str], int]:
    """Committed findings per (finding_type, severity)."""
    counts: dict[tuple[str, str], int] = {}
    for batch in staging.committed_batches(Table.FINDINGS):
        pairs = batch.select(["finding_type", "severity"]).to_pydict()
        for pair in zip(pairs["finding_type"], pairs["severity"], strict=True):
            counts[pair] = counts.get(pair, 0) + 1
    return counts
