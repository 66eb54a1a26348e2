"""The `run` command: a job file plus command-line overrides -> one audit run -> exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import anyio
import orjson

from fleetaudit.api.client import DEFAULT_QUOTAS, ClientSettings, RetryPolicy
from fleetaudit.config import JobSettings, load_job, merge
from fleetaudit.durations import parse_iso8601
from fleetaudit.errors import EXIT_GATE_FAILED, EXIT_OK, UsageError
from fleetaudit.gate import evaluate_gate, format_violations, parse_gate
from fleetaudit.lock import run_lock
from fleetaudit.metrics import write_metrics
from fleetaudit.models import Credentials
from fleetaudit.pipeline import RunSettings, run_audit
from fleetaudit.policy import Policy, load_policy
from fleetaudit.progress import choose_progress
from fleetaudit.report.summary import run_summary

DEFAULT_OUT = Path("reports")
DEFAULT_CONCURRENCY = 64


def job_from_args(args: argparse.Namespace) -> JobSettings:
    """The job file's settings with the command line's on top."""
    job = load_job(args.job) if args.job else JobSettings()
    now = parse_now(args.now) if args.now else None
    overrides = JobSettings(
        endpoint=args.endpoint,
        devices=args.devices,
        policy=args.policy,
        out=args.out,
        qps=args.qps,
        concurrency=args.concurrency,
        now=now,
        resume=args.resume,
        log_format=args.log_format,
        metrics=args.metrics,
        min_coverage=args.min_coverage,
    )
    return merge(job, overrides)


def parse_now(text: str) -> int:
    try:
        return parse_iso8601(text)
    except ValueError as error:
        raise UsageError(f"--now: {error}") from None


def quotas_for(job: JobSettings) -> dict[str, float]:
    """Per-action quotas: defaults, then `qps` for every action, then the `quotas` table."""
    quotas = dict(DEFAULT_QUOTAS)
    if job.qps is not None:
        quotas = dict.fromkeys(quotas, job.qps)
    quotas.update(job.quotas or {})
    return quotas


def run_settings(job: JobSettings) -> RunSettings:
    """Validated settings for one run; a missing required setting is a usage error."""
    if not job.endpoint:
        raise UsageError("no endpoint: give --endpoint URL or `endpoint` in the job file")
    if job.devices is None:
        raise UsageError("no device list: give --devices PATH or `devices` in the job file")
    if job.min_coverage is not None and not 0.0 <= job.min_coverage <= 1.0:
        raise UsageError(f"min coverage must be between 0 and 1, not {job.min_coverage}")
    policy = load_policy(job.policy) if job.policy else Policy()
    retry = RetryPolicy(attempts=job.retry_attempts) if job.retry_attempts else RetryPolicy()
    client_options: dict[str, Any] = {}
    if job.request_timeout is not None:
        client_options["request_timeout"] = job.request_timeout
    if job.connect_timeout is not None:
        client_options["connect_timeout"] = job.connect_timeout
    if job.method is not None:
        client_options["method"] = job.method
    concurrency = job.concurrency or DEFAULT_CONCURRENCY
    client = ClientSettings(
        endpoint=job.endpoint,
        quotas=quotas_for(job),
        concurrency=concurrency,
        retry=retry,
        **client_options,
    )
    return RunSettings(
        devices=job.devices,
        out=job.out or DEFAULT_OUT,
        client=client,
        policy=policy,
        now_ms=job.now,
        resume=bool(job.resume),
        min_coverage=job.min_coverage or 0.0,
        commit_every=job.commit_every or RunSettings.commit_every,
        config=manifest_config(job, client),
    )


def manifest_config(job: JobSettings, client: ClientSettings) -> dict[str, Any]:
    """The effective configuration as the manifest records it: no credentials, ever."""
    return {
        "endpoint": client.endpoint,
        "devices": str(job.devices),
        "policy": str(job.policy) if job.policy else None,
        "out": str(job.out or DEFAULT_OUT),
        "quotas": dict(client.quotas),
        "concurrency": client.concurrency,
        "method": client.method,
        "request_timeout": client.request_timeout,
        "connect_timeout": client.connect_timeout,
        "retry_attempts": client.retry.attempts,
        "resume": bool(job.resume),
        "min_coverage": job.min_coverage or 0.0,
        "gate": dict(job.gate) if job.gate else None,
    }


def run_from_args(
    args: argparse.Namespace,
    credentials_from_env: Callable[[], Credentials],
    out: TextIO | None = None,
) -> int:
    """Run one audit as the command line and job file say; returns the exit code."""
    job = job_from_args(args)
    settings = run_settings(job)
    rules = parse_gate(job.gate or {})
    credentials = credentials_from_env()
    # Progress goes to stderr so the summary on stdout stays clean for pipes and mail.
    progress = choose_progress(sys.stderr, job.log_format, quotas=settings.client.quotas)
    with run_lock(settings.out):
        outcome = anyio.run(partial(run_audit, settings, credentials, progress=progress))
    # sys.stdout is read now, not at import, so a redirected stdout gets the summary.
    out = out or sys.stdout
    print(run_summary(outcome.run_dir), file=out)
    code = outcome.exit_code
    if code != EXIT_OK:
        print(f"coverage below min_coverage {settings.min_coverage}: exit {code}", file=out)
    violations = evaluate_gate(rules, outcome.run_dir)
    if violations:
        print(format_violations(violations), file=out)
        # An incomplete run (4) says more than a tripped gate (1).
        code = code or EXIT_GATE_FAILED
    if job.metrics:
        manifest = orjson.loads((outcome.run_dir / "manifest.json").read_bytes())
        write_metrics(job.metrics, manifest, exit_code=code)
    return code
