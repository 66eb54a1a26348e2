"""A run's manifest as a Prometheus textfile, for node_exporter's textfile collector.

`render_metrics` is pure (manifest in, exposition text out); `write_metrics` replaces the
file atomically, because the collector may read it at any moment and a half-written file
would be scraped as an error. Every value describes the last run, so every metric is a
gauge (a `_total` counter would claim to grow across runs, which a textfile cannot keep).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetaudit.report.staging import write_atomic
from fleetaudit.terms import AuditStatus, Table

PREFIX = "fleetaudit_"
# Per-action counters of the manifest's `api` section -> metric name and help text.
_API_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("calls", "api_calls", "API calls (logical requests) in the last run, per action."),
    ("retries", "api_retries", "Retried attempts in the last run, per action."),
    ("throttled", "api_throttled", "Throttled responses in the last run, per action."),
    ("failures", "api_failures", "Calls that failed for good in the last run, per action."),
    (
        "quota_wait_s",
        "api_quota_wait_seconds",
        "Seconds the last run's calls waited on the account's other processes, per action.",
    ),
    (
        "quota_share",
        "api_quota_share",
        "The last run's call rate while busy, as a share of the quota (0..1), per action.",
    ),
)

Sample = tuple[Mapping[str, str], float]


def render_metrics(
    manifest: Mapping[str, Any],
    *,
    exit_code: int | None = None,
    last_success: Mapping[str, Any] | None = None,
) -> str:
    """The Prometheus text exposition of one finished run (HELP and TYPE for each metric).

    The last success is this run if its coverage met the minimum, else `last_success` (the
    manifest of the run `LATEST` names), so a staleness alert sees untrusted runs as failures.
    """
    counts = manifest.get("counts", {})
    trusted = manifest.get("status") == "complete" and manifest.get("coverage_ok", True)
    finished = success_seconds(manifest if trusted else last_success)
    blocks = [
        _gauge(
            "run_info",
            "The last run: its id and fleetaudit version (value 1).",
            [
                (
                    {
                        "run_id": str(manifest.get("run_id", "")),
                        "version": str(manifest.get("fleetaudit_version", "")),
                    },
                    1,
                )
            ],
        ),
        _gauge(
            "run_duration_seconds",
            "Wall time of the last run.",
            [({}, float(manifest.get("wall_time_s", 0.0)))],
        ),
        _gauge(
            "devices",
            "Devices audited in the last run, per audit status.",
            [({"status": s}, n) for s, n in counts.get(Table.DEVICES, {}).items()],
        ),
        _gauge(
            "findings",
            "Findings of the last run, per finding type and severity.",
            [
                ({"type": finding_type, "severity": severity}, n)
                for finding_type, by_severity in counts.get(Table.FINDINGS, {}).items()
                for severity, n in by_severity.items()
            ],
        ),
        _gauge(
            "coverage_ratio",
            "Share of the audited devices with a definite answer (not 'error'), 0..1.",
            [({}, 1.0 - float(manifest.get("coverage", {}).get(AuditStatus.ERROR, 0.0)))],
        ),
        _gauge(
            "rows",
            "Rows written per report table in the last run.",
            [({"table": t}, n) for t, n in manifest.get("rows", {}).items()],
        ),
    ]
    api = manifest.get("api", {})
    for key, name, help_text in _API_COUNTERS:
        # A share is null for an action that started fewer than two calls: no sample.
        samples = [
            ({"action": a}, stats.get(key) or 0)
            for a, stats in api.items()
            if key != "quota_share" or stats.get(key) is not None
        ]
        blocks.append(_gauge(name, help_text, samples))
    blocks += _outcome(exit_code, finished)
    return "".join(blocks)


def render_failure_metrics(
    *, exit_code: int, failed_at: float, reason: str, last_success: Mapping[str, Any] | None
) -> str:
    """The textfile of a run that ended without publishing (exit 2, 3 or 4): its exit code,
    when it failed and why (a word: the error's kind), and the last success before it."""
    blocks = [
        _gauge(
            "run_failure_timestamp_seconds",
            "When the last run failed without publishing a run (Unix time), per reason.",
            [({"reason": reason}, failed_at)],
        ),
        *_outcome(exit_code, success_seconds(last_success)),
    ]
    return "".join(blocks)


def success_seconds(manifest: Mapping[str, Any] | None) -> float | None:
    """When a trusted run finished (Unix time); None for no run."""
    return None if manifest is None else _epoch_seconds(manifest.get("finished_at"))


def write_metrics(path: Path, text: str) -> None:
    """Replace the textfile at `path` with `text`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"))


def _outcome(exit_code: int | None, last_success_s: float | None) -> list[str]:
    blocks = []
    if last_success_s is not None:
        blocks.append(
            _gauge(
                "last_success_timestamp_seconds",
                "When the last run you can trust (LATEST) finished (Unix time).",
                [({}, last_success_s)],
            )
        )
    if exit_code is not None:
        blocks.append(
            _gauge(
                "run_exit_code",
                "Exit code of the last run (1: gate failed, 3: credentials, 4: incomplete).",
                [({}, exit_code)],
            )
        )
    return blocks


def _gauge(name: str, help_text: str, samples: Iterable[Sample]) -> str:
    full = PREFIX + name
    lines = [f"# HELP {full} {_escape_help(help_text)}", f"# TYPE {full} gauge"]
    lines.extend(f"{full}{_labels(labels)} {_number(value)}" for labels, value in samples)
    return "\n".join(lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


def _escape_label(value: str) -> str:
    # The exposition format's three escapes for label values, backslash first.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _epoch_seconds(iso: object) -> float | None:
    if not isinstance(iso, str):
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
