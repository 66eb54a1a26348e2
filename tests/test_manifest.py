"""manifest.json content: times, counts, coverage, API stats, and no secrets."""

from __future__ import annotations

from pathlib import Path

import orjson

import fleetaudit
from fleetaudit.report.manifest import build_manifest, coverage, iso_utc, redact_config

START_MS = 1_732_009_663_120  # 2024-11-19T09:47:43.120Z

API = {
    "QueryOTAFirmware": {"calls": 3, "retries": 1, "throttled": 1, "failures": 0},
    "ListOTAModuleVersionsByDevice": {"calls": 10, "retries": 0, "throttled": 0, "failures": 1},
}


def _manifest(**overrides: object) -> dict[str, object]:
    args: dict[str, object] = {
        "run_id": "20241119T094743Z-00abcd",
        "run_date": "2024-11-19",
        "started_at_ms": START_MS,
        "finished_at_ms": START_MS + 61_500,
        "status": "complete",
        "config": {"endpoint": "http://127.0.0.1:8686/", "qps": 10},
        "device_counts": {"ok": 8, "not_found": 1, "error": 1},
        "finding_counts": {
            ("stalled_task", "warning"): 4,
            ("firmware_unverified", "critical"): 1,
            ("firmware_unverified", "warning"): 2,
        },
        "api_stats": API,
        "extra": None,
    }
    args.update(overrides)
    return build_manifest(**args)  # type: ignore[arg-type]


def test_identity_and_versions() -> None:
    """The manifest names the schema version, the fleetaudit version and the run."""
    manifest = _manifest()
    assert manifest["schema_version"] == 4
    assert manifest["fleetaudit_version"] == fleetaudit.__version__
    assert manifest["run_id"] == "20241119T094743Z-00abcd"
    assert manifest["status"] == "complete"


def test_times_are_iso_utc() -> None:
    """Start and finish are ISO 8601 in UTC with a Z, and the wall time is in seconds."""
    manifest = _manifest()
    assert manifest["started_at"] == "2024-11-19T09:47:43.120Z"
    assert manifest["finished_at"] == "2024-11-19T09:48:44.620Z"
    assert manifest["wall_time_s"] == 61.5


def test_device_and_finding_counts() -> None:
    """Counts give devices by status and findings by type and severity, with totals."""
    counts = _manifest()["counts"]
    assert counts == {
        "devices": {"ok": 8, "not_found": 1, "error": 1},
        "devices_total": 10,
        "findings": {
            "firmware_unverified": {"critical": 1, "warning": 2},
            "stalled_task": {"warning": 4},
        },
        "findings_by_severity": {"critical": 1, "warning": 6, "info": 0},
        "findings_total": 7,
    }


def test_coverage_is_share_per_status() -> None:
    """Coverage is each audit status's share of all devices."""
    assert _manifest()["coverage"] == {"ok": 0.8, "not_found": 0.1, "error": 0.1}


def test_coverage_of_no_devices_is_zero() -> None:
    """An empty run has zero coverage instead of a division by zero."""
    assert coverage({}) == {"ok": 0.0, "not_found": 0.0, "error": 0.0}


def test_api_stats_are_kept_per_action() -> None:
    """Per-action API statistics are copied as given."""
    assert _manifest()["api"] == API


def test_extra_keys_are_added() -> None:
    """Extra keys are added without overriding what the manifest itself says."""
    manifest = _manifest(extra={"sessions": 2, "status": "tampered"})
    assert manifest["sessions"] == 2
    assert manifest["status"] == "complete"


def test_manifest_is_json() -> None:
    """The manifest encodes with orjson as it is."""
    assert orjson.loads(orjson.dumps(_manifest()))["counts"]["findings_total"] == 7


def test_no_secret_passes() -> None:
    """Secret-looking keys, nested or in extra, and URL query strings never reach the JSON."""
    config = {
        "access_key_id": "LTAIpublic",
        "access_key_secret": "S3CRET-1",
        "client": {"Password": "S3CRET-2", "api_token": "S3CRET-3", "qps": 5},
        "credentials": {"id": "x", "secret": "S3CRET-4"},
        "firmware_urls": ["https://oss.example/fw.bin?Expires=1&Signature=S3CRET-5"],
    }
    text = orjson.dumps(_manifest(config=config, extra={"SecretKey": "S3CRET-6"})).decode()
    assert "S3CRET" not in text
    assert "LTAIpublic" in text
    assert "https://oss.example/fw.bin" in text


def test_redact_keeps_ordinary_settings() -> None:
    """Redaction keeps settings that are not secrets, and paths become text."""
    assert redact_config({"qps": 10, "out": Path("/tmp/out"), "nested": {"a": [1, 2]}}) == {
        "qps": 10,
        "out": "/tmp/out",
        "nested": {"a": [1, 2]},
    }


def test_iso_utc_of_epoch() -> None:
    """Epoch zero is 1970-01-01T00:00:00.000Z."""
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
