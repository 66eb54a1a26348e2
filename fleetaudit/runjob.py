"""The `run` command: a job file plus command-line overrides -> one audit run -> exit code."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import anyio
import orjson

from fleetaudit.config import settings_from
from fleetaudit.errors import (
    EXIT_GATE_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    FleetauditError,
    exit_code_for,
)
from fleetaudit.filecheck import check_output_file, check_regular_file
from fleetaudit.gate import evaluate_gate, format_gate, gate_record
from fleetaudit.lock import run_lock
from fleetaudit.metrics import render_failure_metrics, render_metrics, write_metrics
from fleetaudit.models import Credentials
from fleetaudit.pipeline import client_settings, run_audit
from fleetaudit.policy import Policy, load_policy
from fleetaudit.progress import choose_progress
from fleetaudit.report.staging import latest_run
from fleetaudit.report.summary import run_summary
from fleetaudit.terms import AuditStatus

log = logging.getLogger(__name__)


def run_from_args(
    args: argparse.Namespace,
    credentials_from_env: Callable[[], Credentials],
    out: TextIO | None = None,
) -> int:
    """Run one audit as the command line and job file say; returns the exit code."""
    settings = settings_from(args.job, args)
    policy = load_policy(settings.policy) if settings.policy else Policy()
    # Before the lock: a FIFO as the device list would block open() while holding it.
    assert settings.devices is not None  # settings_from() refuses a run without one
    check_regular_file(settings.devices)
    if settings.metrics:
        # Found now, not after hours of calls when the textfile cannot be written.
        check_output_file(settings.metrics, "--metrics")
    credentials = credentials_from_env()
    quotas = client_settings(settings).quotas
    # Progress goes to stderr so the summary on stdout stays clean for pipes and mail.
    progress = choose_progress(sys.stderr, settings.log_format, quotas=quotas)
    with run_lock(settings.out):
        try:
            outcome = anyio.run(
                partial(run_audit, settings, policy, credentials, progress=progress)
            )
        except (FleetauditError, OSError) as error:
            if settings.metrics:
                # The alert on the failure itself: a run that never published still says so.
                _write_failure_metrics(settings.metrics, settings.out, error)
            raise
    # sys.stdout is read now, not at import, so a redirected stdout gets the summary.
    out = out or sys.stdout
    print(run_summary(outcome.run_dir), file=out)
    code = outcome.exit_code
    if code != EXIT_OK:
        print(untrusted_note(outcome.manifest, latest_run(settings.out), code), file=out)
    gate = outcome.manifest.get("gate")
    if not isinstance(gate, Mapping):
        # A run published by an older fleetaudit (a resume found it): judge it now.
        gate = gate_record(settings.gate, evaluate_gate(settings.gate, outcome.run_dir))
    text = format_gate(gate)
    if text is not None:
        print(text, file=out)
    if gate.get("verdict") == "failed":
        # An incomplete run (4) says more than a tripped gate (1).
        code = code or EXIT_GATE_FAILED
    if settings.metrics:
        text = render_metrics(outcome.manifest, exit_code=code, last_success=_latest(settings.out))
        write_metrics(settings.metrics, text)
    return code


def _latest(out: Path) -> dict[str, Any] | None:
    """The manifest of the run LATEST names (the last success), if any."""
    run_dir = latest_run(out)
    return None if run_dir is None else orjson.loads((run_dir / "manifest.json").read_bytes())


def _write_failure_metrics(path: Path, out: Path, error: BaseException) -> None:
    code = exit_code_for(error) if isinstance(error, FleetauditError) else EXIT_INCOMPLETE
    text = render_failure_metrics(
        exit_code=code, failed_at=time.time(), reason=type(error).__name__,
        last_success=_latest(out),
    )  # fmt: skip
    try:
        write_metrics(path, text)
    except OSError as write_error:
        log.warning("could not write the metrics file %s: %s", path, write_error)


def untrusted_note(manifest: Mapping[str, Any], latest: Path | None, code: int) -> str:
    """What a run below min_coverage means for its readers: its exit code and `LATEST`."""
    covered = 1.0 - float(manifest.get("coverage", {}).get(AuditStatus.ERROR, 0.0))
    still = f"still names {latest.parent.name}/{latest.name}" if latest else "names no run yet"
    return (
        f"coverage below min_coverage {manifest.get('min_coverage')}: {covered:.1%} of the "
        f"devices got a definite answer; exit {code}. This run is kept but not trusted: "
        f"LATEST {still} (the newest run whose coverage met the minimum)."
    )
