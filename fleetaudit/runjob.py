"""The `run` command: a job file plus command-line overrides -> one audit run -> exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import anyio

from fleetaudit.api.client import DEFAULT_QUOTAS, ClientSettings, RetryPolicy
from fleetaudit.config import JobSettings, Policy, load_job, load_policy, merge, parse_iso8601
from fleetaudit.errors import UsageError
from fleetaudit.models import Credentials
from fleetaudit.pipeline import RunOutcome, RunSettings, run_audit
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
    out: TextIO = sys.stdout,
) -> int:
    job = job_from_args(args)
    settings = run_settings(job)
    credentials = credentials_from_env()
    outcome: RunOutcome = anyio.run(run_audit, settings, credentials)
    print(run_summary(outcome.run_dir), file=out)
    return outcome.exit_code
