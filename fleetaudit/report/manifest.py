"""The content of a run's manifest.json: what ran, how it went, with secrets left out (pure).

Layout (keys in this order; staging.finalize adds `rows` per table):

    schema_version, fleetaudit_version, run_id, run_date, status,
    started_at, finished_at (ISO 8601 UTC), wall_time_s,
    config      the effective configuration, redacted by `redact_config`
    counts      devices {audit_status: n}, devices_total,
                findings {finding_type: {severity: n}}, findings_by_severity, findings_total
    coverage    {audit_status: share of devices, 0..1}
    api         per-action statistics as the client reports them
    ...         whatever `extra` holds (redacted like config)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fleetaudit
from fleetaudit.report.schema import SCHEMA_VERSION
from fleetaudit.terms import AuditStatus, Severity

# Plain text, not the members: they become keys of the manifest, a plain JSON document.
AUDIT_STATUSES: tuple[str, ...] = tuple(status.value for status in AuditStatus)
SEVERITIES: tuple[str, ...] = tuple(severity.value for severity in Severity)
# A key containing any of these holds a credential, whatever else it is called.
SECRET_KEY_PARTS: tuple[str, ...] = ("secret", "password", "token", "credential", "signature")


def build_manifest(
    *,
    run_id: str,
    run_date: str,
    started_at_ms: int,
    finished_at_ms: int,
    status: str,
    config: Mapping[str, Any],
    device_counts: Mapping[str, int],
    finding_counts: Mapping[tuple[str, str], int],
    api_stats: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of one run as a JSON-able dict."""
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "fleetaudit_version": fleetaudit.__version__,
        "run_id": run_id,
        "run_date": run_date,
        "status": status,
        "started_at": iso_utc(started_at_ms),
        "finished_at": iso_utc(finished_at_ms),
        "wall_time_s": round((finished_at_ms - started_at_ms) / 1000, 3),
        "config": redact_config(config),
        "counts": _counts(device_counts, finding_counts),
        "coverage": coverage(device_counts),
        "api": {action: dict(stats) for action, stats in sorted(api_stats.items())},
    }
    for key, value in redact_config(extra or {}).items():
        manifest.setdefault(key, value)
    return manifest


def iso_utc(epoch_ms: int) -> str:
    """`2024-11-19T09:47:43.120Z` for an epoch time in milliseconds."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` without any key that names a secret, and URLs without their query strings."""
    return {
        str(key): _redact_value(value)
        for key, value in config.items()
        if not any(part in str(key).lower() for part in SECRET_KEY_PARTS)
    }


def coverage(device_counts: Mapping[str, int]) -> dict[str, float]:
    """The share of audited devices in each audit status (every known status listed)."""
    total = sum(device_counts.values())
    statuses = [*AUDIT_STATUSES, *sorted(set(device_counts) - set(AUDIT_STATUSES))]
    return {s: round(device_counts.get(s, 0) / total, 6) if total else 0.0 for s in statuses}


def _counts(
    device_counts: Mapping[str, int], finding_counts: Mapping[tuple[str, str], int]
) -> dict[str, Any]:
    devices = {s: device_counts.get(s, 0) for s in AUDIT_STATUSES}
    devices.update({s: n for s, n in sorted(device_counts.items()) if s not in devices})
    findings: dict[str, dict[str, int]] = {}
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for (finding_type, severity), n in sorted(finding_counts.items()):
        findings.setdefault(finding_type, {})[severity] = n
        by_severity[severity] = by_severity.get(severity, 0) + n
    return {
        "devices": devices,
        "devices_total": sum(devices.values()),
        "findings": findings,
        "findings_by_severity": by_severity,
        "findings_total": sum(by_severity.values()),
    }


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact_config(value)
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)  # orjson cannot encode paths; their text is what a reader wants
    if isinstance(value, str) and "?" in value and "://" in value:
        # A presigned URL's query string is a credential; the rest of the URL is useful.
        return urlunsplit(urlsplit(value)._replace(query="", fragment=""))
    return value
