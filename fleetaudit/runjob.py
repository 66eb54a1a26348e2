"""The `run` command: a job file plus command-line overrides -> one audit run -> exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from typing import TextIO

import anyio
import orjson

from fleetaudit.config import settings_from
from fleetaudit.errors import EXIT_GATE_FAILED, EXIT_OK
from fleetaudit.filecheck import check_regular_file
from fleetaudit.gate import evaluate_gate, format_violations
from fleetaudit.lock import run_lock
from fleetaudit.metrics import write_metrics
from fleetaudit.models import Credentials
from fleetaudit.pipeline import client_settings, run_audit
from fleetaudit.policy import Policy, load_policy
from fleetaudit.progress import choose_progress
from fleetaudit.report.summary import run_summary


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
    credentials = credentials_from_env()
    quotas = client_settings(settings).quotas
    # Progress goes to stderr so the summary on stdout stays clean for pipes and mail.
    progress = choose_progress(sys.stderr, settings.log_format, quotas=quotas)
    with run_lock(settings.out):
        outcome = anyio.run(partial(run_audit, settings, policy, credentials, progress=progress))
    # sys.stdout is read now, not at import, so a redirected stdout gets the summary.
    out = out or sys.stdout
    print(run_summary(outcome.run_dir), file=out)
    code = outcome.exit_code
    if code != EXIT_OK:
        print(f"coverage below min_coverage {settings.min_coverage}: exit {code}", file=out)
    violations = evaluate_gate(settings.gate, outcome.run_dir)
    if violations:
        print(format_violations(violations), file=out)
        # An incomplete run (4) says more than a tripped gate (1).
        code = code or EXIT_GATE_FAILED
    if settings.metrics:
        manifest = orjson.loads((outcome.run_dir / "manifest.json").read_bytes())
        write_metrics(settings.metrics, manifest, exit_code=code)
    return code
