"""Device results -> rows of every table (the join and the findings), and rows read back.

`Recorder` turns each device's answers into devices, module_versions, tasks, findings and
errors rows, buffered until the pipeline commits them. The readers below serve a resumed
run (what is already done) and the end of a run (fleet-majority drift, counts), streaming
committed parts batch by batch so memory does not grow with the fleet.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa

from fleetaudit.api.client import OtaClient
from fleetaudit.audit.findings import (
    VersionCounts,
    device_findings,
    device_not_found_finding,
    majority_drift_findings,
    task_age_seconds,
)
from fleetaudit.collect import DeviceResult, Lookups
from fleetaudit.models import Device, Firmware, Job, ModuleVersion
from fleetaudit.policy import Policy
from fleetaudit.report.schema import task_row
from fleetaudit.report.staging import RunStaging

# Marks the journal lines that hold fleet-majority findings (see staging.commit).
MAJORITY_TAG = "majority_findings"
# Findings per majority commit: bounds the memory the end of a large run needs.
MAJORITY_CHUNK = 10_000
_MODULES_ACTION = "ListOTAModuleVersionsByDevice"
_FIRMWARE_ACTION = "QueryOTAFirmware"
_JOBS_ACTION = "ListOTAJobByDevice"


class Recorder:
    """Turns device results into rows of every table, buffered until the next commit."""

    def __init__(
        self,
        staging: RunStaging,
        policy: Policy,
        expected: Mapping[tuple[str, str], str],
        lookups: Lookups,
        now_ms: int,
    ) -> None:
        self._staging = staging
        self._policy = policy
        self._expected = expected
        self._lookups = lookups
        self._now_ms = now_ms
        self.pending = 0
        self._rows: dict[str, list[object]] = {}

    def record(self, result: DeviceResult) -> None:
        device = result.device
        if result.audit.audit_status == "not_found":
            self._add("findings", [device_not_found_finding(device)])
        elif _modules_listed(result):
            # Without its module list a device would look as if it lacked every targeted
            # module; its devices and errors rows already say it could not be audited.
            findings = device_findings(
                device,
                result.modules,
                result.tasks,
                expected=self._expected,
                firmware=self._lookups.firmware_by_id,
                jobs=self._lookups.jobs_by_key,
                policy=self._policy,
                now_ms=self._now_ms,
            )
            self._add("findings", findings)
        self._add("devices", [result.audit])
        self._add("module_versions", result.modules)
        self._add(
            "tasks", [task_row(task, task_age_seconds(task, self._now_ms)) for task in result.tasks]
        )
        self._add("errors", result.failures)
        self.pending += 1

    def flush(self) -> None:
        drain_lookups(self._staging, self._lookups)
        for table, rows in self._rows.items():
            if rows:
                self._staging.append(table, rows)
        self._rows = {}
        self.pending = 0

    def _add(self, table: str, rows: list[Any]) -> None:
        if rows:
            self._rows.setdefault(table, []).extend(rows)


def _modules_listed(result: DeviceResult) -> bool:
    return not any(f.action == _MODULES_ACTION for f in result.failures)


def drain_lookups(staging: RunStaging, lookups: Lookups) -> None:
    for table, rows in (
        ("firmware", lookups.new_firmware),
        ("jobs", lookups.new_jobs),
        ("errors", lookups.failures),
    ):
        if rows:
            staging.append(table, list(rows))
            rows.clear()


def lookups_from(staging: RunStaging, client: OtaClient) -> Lookups:
    """Lookups that already know the firmware and jobs a resumed run wrote."""
    lookups = Lookups(client)
    for batch in staging.committed_batches("firmware"):
        for row in batch.to_pylist():
            lookups.remember_firmware(Firmware(**_epoch_ms(row, Firmware.__slots__)))
    for batch in staging.committed_batches("jobs"):
        for row in batch.to_pylist():
            lookups.remember_job(Job(**_epoch_ms(row, Job.__slots__)))
    # A lookup that failed for good is finished work too: asking again would add a second
    # answer to a run whose errors table already holds the first.
    for batch in staging.committed_batches("errors"):
        for row in batch.select(["action", "firmware_id", "job_id"]).to_pylist():
            firmware_id, job_id = row["firmware_id"], row["job_id"]
            if row["action"] == _FIRMWARE_ACTION and firmware_id:
                lookups.firmware.prime(firmware_id, None)
            elif row["action"] == _JOBS_ACTION and firmware_id and job_id:
                lookups.jobs.prime((firmware_id, job_id), None)
    return lookups


def _epoch_ms(row: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """A row read back from Parquet, with timestamps turned back into epoch milliseconds."""
    values: dict[str, Any] = {}
    for name in names:
        value = row.get(name)
        values[name] = round(value.timestamp() * 1000) if isinstance(value, datetime) else value
    return values


def committed_devices(staging: RunStaging) -> set[tuple[str, str]]:
    done: set[tuple[str, str]] = set()
    for batch in staging.committed_batches("devices"):
        keys = batch.select(["product_key", "device_name"]).to_pydict()
        done.update(zip(keys["product_key"], keys["device_name"], strict=True))
    return done


def device_key(device: Device) -> tuple[str, str]:
    return (device.product_key, device.device_name)


def _module_rows(staging: RunStaging) -> Iterator[ModuleVersion]:
    for batch in staging.committed_batches("module_versions"):
        for row in batch.to_pylist():
            yield ModuleVersion(**{name: row[name] for name in ModuleVersion.__slots__})


def commit_majority_findings(staging: RunStaging, targeted: frozenset[tuple[str, str]]) -> None:
    """Fleet-majority drift needs the whole run: count first, then judge, both streamed.

    Findings are committed in numbered chunks, each tagged in the journal. The chunks are
    the same in every session (the module rows are all committed by now), so a session
    that died half way adds only the chunks it had not committed.
    """
    counts = VersionCounts()
    for batch in staging.committed_batches("module_versions"):
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
            staging.append("findings", chunk)
            staging.commit(tag)


def value_counts(staging: RunStaging, table: str, column: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for batch in staging.committed_batches(table):
        for entry in pa.compute.value_counts(batch.column(column)).to_pylist():
            counts[str(entry["values"])] = counts.get(str(entry["values"]), 0) + entry["counts"]
    return counts


def finding_counts(staging: RunStaging) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for batch in staging.committed_batches("findings"):
        pairs = batch.select(["finding_type", "severity"]).to_pydict()
        for pair in zip(pairs["finding_type"], pairs["severity"], strict=True):
            counts[pair] = counts.get(pair, 0) + 1
    return counts
