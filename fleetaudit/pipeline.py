"""run_audit: device list -> API calls -> join -> findings -> Parquet, in that order.

Everything below this module takes time, randomness and I/O as parameters; this is the
one place that wires the real ones together for a run.
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import anyio
import orjson

from fleetaudit.api.client import (
    DEFAULT_QUOTAS,
    ClientSettings,
    RetryPolicy,
    open_client,
)
from fleetaudit.api.stats import ApiStats
from fleetaudit.audit.findings import targeted_modules
from fleetaudit.audit.join import device_rows
from fleetaudit.audit.sampling import GateSample, draw_gate_sample
from fleetaudit.collect import Asking, Lookups, fan_out
from fleetaudit.config import Settings
from fleetaudit.devices import (
    DeviceListCheck,
    read_devices,
    validate_device_list,
)
from fleetaudit.durations import time_id
from fleetaudit.errors import AuthError, InputError, RunIncomplete, UsageError
from fleetaudit.gate import staged_gate_record
from fleetaudit.inputs import input_differences, run_inputs
from fleetaudit.models import Credentials, Device, DeviceResult
from fleetaudit.policy import Policy
from fleetaudit.prefetch import resolve_targets, sweep_before_fan_out, tasks_record
from fleetaudit.report.manifest import build_manifest
from fleetaudit.report.recorder import Recorder
from fleetaudit.report.resume import (
    commit_majority_findings,
    committed_devices,
    committed_lookups,
    device_key,
    finding_counts,
    value_counts,
)
from fleetaudit.report.series import commit_changes, target_records, write_report_quietly
from fleetaudit.report.staging import RunStaging, SetAside, remove_stale_staging
from fleetaudit.settings import manifest_values
from fleetaudit.sweep import Sweep
from fleetaudit.terms import AuditStatus, Table, TasksFrom

log = logging.getLogger(__name__)

# The client's codes for a call the platform never answered (see api/client.py `_send`).
_NO_ANSWER = frozenset({"ConnectionError", "Timeout"})
# How often a run's progress sink hears from it even when no device finishes.
_TICK_S = 1.0


def client_settings(settings: Settings) -> ClientSettings:
    """How the client calls the platform for this run (the settings are already valid)."""
    assert settings.endpoint is not None  # settings_from() refuses a run without one
    retry = RetryPolicy(
        attempts=settings.retry_attempts,
        wait_initial=settings.retry_wait_initial,
        wait_max=settings.retry_wait_max,
        timeout=settings.call_timeout,
        max_server_wait=settings.max_server_wait,
    )
    return ClientSettings(
        endpoint=settings.endpoint,
        quotas={**DEFAULT_QUOTAS, **(settings.quotas_per_action() or {})},
        concurrency=settings.concurrency,
        connect_timeout=settings.connect_timeout,
        request_timeout=settings.request_timeout,
        method="GET" if settings.method == "GET" else "POST",
        retry=retry,
        iot_instance_id=settings.iot_instance_id,
        quota_store=settings.quota_store,
        account=settings.account,
        quota_share=settings.quota_share,
    )


def manifest_config(settings: Settings, client: ClientSettings) -> dict[str, Any]:
    """The configuration as the manifest records it: every recorded setting, the quotas in
    force per action, and never a credential (there are none in the settings)."""
    return {**manifest_values(settings), "quotas": dict(client.quotas)}


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: where its reports are, its manifest, and the exit code it earned."""

    run_dir: Path
    manifest: Mapping[str, Any]
    exit_code: int


class ProgressSink(Protocol):
    """Where a run reports progress: a terminal bar, a periodic log line, or nothing."""

    def start(self, total: int, already_done: int, stats: ApiStats) -> None: ...

    def advance(self, audit_status: str) -> None: ...

    def tick(self) -> None:
        """Called about every `_TICK_S` seconds, so the sink can speak while no device ends."""

    def finish(self) -> None: ...


async def run_audit(
    settings: Settings,
    policy: Policy,
    credentials: Credentials,
    *,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    progress: ProgressSink | None = None,
) -> RunOutcome:
    """Audit every device of the list and publish the run's reports atomically."""
    rng = rng or random.Random()
    assert settings.devices is not None  # settings_from() refuses a run without one
    client = client_settings(settings)
    config = manifest_config(settings, client)
    device_list = validate_device_list(settings.devices)
    inputs = run_inputs(settings)
    if device_list.rows == 0 and not settings.allow_empty_device_list:
        # An empty "complete" run would move LATEST: almost always a truncated export.
        problem = "no devices; a truncated export? (--allow-empty-device-list runs it anyway)"
        raise InputError(str(settings.devices), None, None, problem)
    started_ms = int(clock() * 1000)
    staging = _open_staging(settings, config, inputs, started_ms, rng)
    if isinstance(staging, Path):
        return _published_outcome(staging)
    now_ms = int(staging.meta["now_ms"])
    sample = _gate_sample(settings, staging, unique=device_list.has_duplicates)
    try:
        api_stats, sweep = await _collect(
            _Run(
                settings.devices,
                client,
                policy,
                settings.commit_every,
                settings.commit_interval,
                TasksFrom(settings.tasks_from),
                modules=not settings.tasks_only,
                sampled=sample.devices if sample is not None else None,
            ),
            credentials,
            staging,
            now_ms,
            device_list,
            rng,
            progress,
        )
    except (AuthError, UsageError, RunIncomplete, BaseExceptionGroup) as error:
        stopped = _only_stop(error)
        if stopped is None:
            raise
        if not staging.meta.get("resumed") and not any(staging.committed_batches(Table.DEVICES)):
            # Nothing useful was written: leave no trace of a run that never started.
            shutil.rmtree(staging.path, ignore_errors=True)
        raise stopped from None
    targeted = targeted_modules(policy)
    await anyio.to_thread.run_sync(commit_majority_findings, staging, targeted)
    # Before the gate: its new-finding rules read the changes this commits.
    series = settings.series or str(settings.devices.resolve())
    changes = await anyio.to_thread.run_sync(commit_changes, staging, series)
    targets = await anyio.to_thread.run_sync(target_records, staging, policy)

    device_counts = value_counts(staging, Table.DEVICES, "audit_status")
    audited = sum(device_counts.values())
    covered = audited - device_counts.get(AuditStatus.ERROR, 0)
    coverage = covered / audited if audited else 1.0
    # Judged before publishing, so the verdict is in the manifest a reader first sees.
    gate = await anyio.to_thread.run_sync(
        partial(staged_gate_record, sample=sample), settings.gate, staging.committed_batches
    )
    manifest = build_manifest(
        run_id=staging.run_id,
        run_date=staging.meta["run_date"],
        started_at_ms=int(staging.meta["started_at_ms"]),
        finished_at_ms=int(clock() * 1000),
        status="complete",
        config=dict(config, now=now_ms),
        device_counts=device_counts,
        finding_counts=finding_counts(staging),
        api_stats=api_stats.as_dict(),
        extra={
            "device_list_rows": device_list.rows,
            "device_list_unique": device_list.unique,
            "min_coverage": settings.min_coverage,
            "coverage_ok": coverage >= settings.min_coverage,
            "sessions": int(staging.meta.get("sessions", 1)),
            "inputs": staging.meta["inputs"],
            "set_aside": staging.meta["set_aside"],
            "gate": gate,
            "tasks": tasks_record(staging, settings, sweep),
            "quota": api_stats.pacing,
            "series": series,
            "changes": changes,
            "targets": targets,
        },
    )
    run_dir = await anyio.to_thread.run_sync(
        partial(
            staging.finalize,
            manifest,
            trusted=coverage >= settings.min_coverage,
            before_publish=partial(write_report_quietly, out=settings.out),
        )
    )
    exit_code = 0 if coverage >= settings.min_coverage else RunIncomplete.exit_code
    return RunOutcome(run_dir=run_dir, manifest=manifest, exit_code=exit_code)


_Stop = (AuthError, UsageError, RunIncomplete)


def _only_stop(error: BaseException) -> AuthError | UsageError | RunIncomplete | None:
    """The one error that stops the run behind `error`, also when task groups wrapped it
    (and nothing else came with it): wrong credentials, a bad setting, an interruption."""
    if isinstance(error, _Stop):
        return error
    if isinstance(error, BaseExceptionGroup):
        stop, rest = error.split(_Stop)
        if stop is not None and rest is None:
            return _only_stop(stop.exceptions[0])
    return None


def _published_outcome(run_dir: Path) -> RunOutcome:
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    exit_code = 0 if manifest.get("coverage_ok", True) else RunIncomplete.exit_code
    return RunOutcome(run_dir=run_dir, manifest=manifest, exit_code=exit_code)


def _gate_sample(settings: Settings, staging: RunStaging, *, unique: bool) -> GateSample | None:
    """A sampled gate's devices: drawn from the gate's scope with the run's seed."""
    if settings.sample is None:
        return None
    assert settings.devices is not None
    path, product = settings.devices, settings.gate.product_key

    def scope() -> Iterator[tuple[str, str]]:
        for device in read_devices(path, unique=unique):
            if product is None or device.product_key == product:
                yield device.product_key, device.device_name

    seed = int(staging.meta.get("sample_seed", 0))
    sample = draw_gate_sample(settings.sample, seed, scope)
    log.info("sampled gate: %d of %d devices in scope", len(sample.devices), sample.population)
    return sample


def _open_staging(
    settings: Settings,
    config: Mapping[str, Any],
    inputs: Mapping[str, Any],
    started_ms: int,
    rng: random.Random,
) -> RunStaging | Path:
    """A new staged run, the newest one to resume, or the run directory of one that died
    after it was published (a resume then has nothing left to do).

    A staged run made from other inputs is never continued (that would publish a mix of two
    runs): it is set aside with a warning and a new run starts, so that cron keeps working.
    """
    set_aside: list[str] = []
    if settings.resume:
        staging = RunStaging.resume_newest(
            settings.out, lambda meta: input_differences(meta.get("inputs"), inputs)
        )
        if isinstance(staging, Path):
            return staging
        if isinstance(staging, SetAside):
            log.warning(
                "--resume: staged run %s was not continued because %s changed; it is kept "
                "in %s and a new run starts",
                staging.run_id,
                ", ".join(staging.reasons),
                staging.path,
            )
            set_aside.append(staging.run_id)
        elif staging is not None:
            staging.meta["resumed"] = True
            staging.meta["sessions"] = int(staging.meta.get("sessions", 1)) + 1
            staging.save_meta()
            return staging
    remove_stale_staging(settings.out, started_ms)
    run_id = time_id(started_ms, rng.getrandbits(24))
    meta = {
        "run_id": run_id,
        "run_date": time.strftime("%Y-%m-%d", time.gmtime(started_ms / 1000)),
        "started_at_ms": started_ms,
        "now_ms": settings.now if settings.now is not None else started_ms,
        "config": dict(config),
        "inputs": dict(inputs),
        "set_aside": set_aside,
        "sessions": 1,
        # A sampled gate draws its sample from this seed: a resumed run keeps the sample.
        "sample_seed": rng.getrandbits(63),
    }
    return RunStaging.create(settings.out, run_id, meta)


@dataclass(frozen=True)
class _Run:
    """What the collecting phase needs of the settings, resolved."""

    devices: Path
    client: ClientSettings
    policy: Policy
    commit_every: int
    commit_interval_s: float
    tasks_from: TasksFrom = TasksFrom.DEVICES
    modules: bool = True  # False: a tasks-only audit
    sampled: frozenset[tuple[str, str]] | None = None  # a sampled gate: versions of these only


async def _collect(
    settings: _Run,
    credentials: Credentials,
    staging: RunStaging,
    now_ms: int,
    device_list: DeviceListCheck,
    rng: random.Random,
    progress: ProgressSink | None,
) -> tuple[ApiStats, Sweep | None]:
    done = committed_devices(staging)
    async with open_client(settings.client, credentials, rng=rng) as client:
        known = committed_lookups(staging)
        lookups = Lookups(
            client,
            firmware=known.firmware,
            jobs=known.jobs,
            failed_firmware=known.failed_firmware,
            failed_jobs=known.failed_jobs,
        )
        recorder = Recorder(staging)
        # A list without duplicates needs no set of every device seen (memory at 1M devices).
        listed = read_devices(settings.devices, unique=device_list.has_duplicates)
        asking = Asking(modules=settings.modules, sampled=settings.sampled)
        sweep: Sweep | None = None

        def pending(device: Device) -> bool:
            if device_key(device) not in done:
                return True
            if sweep is not None:
                sweep.tasks_of(device)  # committed before: its swept tasks are claimed
            return False

        devices = (d for d in listed if pending(d))
        if progress:
            progress.start(device_list.unique, len(done), client.stats)
        last_commit = time.monotonic()
        answered = bool(done)  # a resumed run was answered before
        unreachable: str | None = None
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_signal, scope)
                # Inside the scope: a signal during the sweep or lookups stops the run too.
                if settings.tasks_from != TasksFrom.DEVICES:
                    sweep = await sweep_before_fan_out(client, settings.devices, lookups, recorder)
                    compare = settings.tasks_from == TasksFrom.BOTH
                    asking = Asking(
                        modules=settings.modules,
                        sweep=sweep,
                        compare=compare,
                        sampled=settings.sampled,
                    )
                expected = await resolve_targets(settings.policy, lookups, recorder)
                results_in, results_out = anyio.create_memory_object_stream[DeviceResult](
                    settings.client.concurrency
                )
                if progress:
                    group.start_soon(_tick_every, _TICK_S, progress)
                group.start_soon(
                    partial(fan_out, concurrency=settings.client.concurrency, asking=asking),
                    client,
                    lookups,
                    devices,
                    results_in,
                )
                async with results_out:
                    async for result in results_out:
                        if not answered:
                            if _unreachable(result):
                                # Nothing has answered yet: a wrong endpoint or no network.
                                # Retrying every device of the list would take hours.
                                unreachable = result.failures[0].error_code
                                break
                            answered = True
                        recorder.record(
                            device_rows(
                                result, expected=expected, policy=settings.policy, now_ms=now_ms
                            )
                        )
                        if progress:
                            progress.advance(result.audit.audit_status)
                        since = time.monotonic() - last_commit
                        if recorder.pending >= settings.commit_every or (
                            since >= settings.commit_interval_s
                        ):
                            await anyio.to_thread.run_sync(recorder.commit)
                            last_commit = time.monotonic()
                group.cancel_scope.cancel()
        # Whatever finished is kept, interrupted or not: a resumed run starts from here.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(recorder.commit)
        if progress:
            progress.finish()
        if unreachable is not None:
            raise RunIncomplete(
                f"no answer from {settings.client.endpoint} ({unreachable}): "
                "check the endpoint and the network"
            )
        if scope.cancelled_caught:
            raise RunIncomplete(
                f"interrupted; finished devices are saved in {staging.path}: "
                "run again with --resume to continue"
            )
        return client.stats, sweep


def _unreachable(result: DeviceResult) -> bool:
    """Every call for the device failed without an answer from the platform."""
    return result.audit.audit_status == AuditStatus.ERROR and all(
        failure.error_code in _NO_ANSWER for failure in result.failures
    )


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _tick_every(interval_s: float, progress: ProgressSink) -> None:
    # Runs until the task group is cancelled at the end of the run.
    while True:
        await anyio.sleep(interval_s)
        progress.tick()
