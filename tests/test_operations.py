"""Operating `fleetaudit run` through cli.main: gate and coverage exit codes, the run lock,
progress on a terminal and in logs, the progress tick, and the Prometheus textfile.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from fleetaudit import cli
from fleetaudit.api.stats import ApiStats
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.emulator.fleet import StaticFleet
from fleetaudit.progress import LogProgress, TerminalProgress

from helpers import (
    FIXED_NOW,
    UNLIMITED,
    FakeClock,
    FleetBuilder,
    Samples,
    emulator_url,
    lock_held_elsewhere,
    metric_key,
    metric_samples,
    set_env_credentials,
    write_device_list,
)

KEY_ID = "ops-key"
SECRET = "ops-Secret-93ad1e"
NOW_MS = int(FIXED_NOW * 1000)
NOW_ISO = "2024-11-19T09:47:43Z"
RUN_GLOB = "run_date=*/run_id=*"
# Anything but a newline: the carriage return and ESC of a redrawn line included.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
DRIFTING = ("d03", "d07")


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env_credentials(monkeypatch, KEY_ID, SECRET)


def ops_fleet() -> StaticFleet:
    """10 devices of pk1 on 2.0.0 except d03 and d07 (1.0.0); d05 has one QUEUED task."""
    fleet = FleetBuilder()
    for name in (f"d{i:02d}" for i in range(10)):
        fleet.device(name, {"default": "1.0.0" if name in DRIFTING else "2.0.0"})
    an_hour_ago = NOW_MS - 3_600_000
    return fleet.task(
        "T1", "d05", job="", firmware="", dest="3.0.0", product_name="Plug",
        created_ms=an_hour_ago, modified_ms=an_hour_ago,
    ).build()  # fmt: skip


def write_inputs(tmp_path: Path, fleet: StaticFleet) -> tuple[Path, Path]:
    """The fleet's device list and a policy targeting 2.0.0 for pk1/default."""
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[targets]]\nproduct_key = "pk1"\nmodule = "default"\nversion = "2.0.0"\n', "utf-8"
    )
    return devices, policy


def write_job(tmp_path: Path, url: str, extra: str = "") -> Path:
    """A job file naming every input, with `extra` TOML appended (a [gate], min_coverage...)."""
    devices, policy = write_inputs(tmp_path, ops_fleet())
    job = tmp_path / "job.toml"
    job.write_text(
        f'endpoint = "{url}"\ndevices = "{devices.name}"\npolicy = "{policy.name}"\n'
        f'out = "out"\nnow = "{NOW_ISO}"\nqps = 1000\nconcurrency = 4\n{extra}',
        encoding="utf-8",
    )
    return job


@contextmanager
def emulator(**create_app_kwargs: Any) -> Iterator[str]:
    with emulator_url(
        ops_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED, **create_app_kwargs
    ) as (url, _):
        yield url


def published(out: Path) -> list[Path]:
    return list(out.glob(RUN_GLOB))


def manifest_of(run_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = orjson.loads((run_dir / "manifest.json").read_bytes())
    return manifest


# ---------------------------------------------------------------------------- gate and coverage


def test_tripped_gate_exits_1_naming_rule_and_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gate the run trips exits 1 and prints the rule and the devices behind it."""
    with emulator() as url:
        job = write_job(tmp_path, url, "[gate]\nmax_drift_percent = 10\n")
        code = cli.main(["run", str(job)])
    stdout = capsys.readouterr().out
    assert code == 1
    assert "gate: FAILED" in stdout
    assert "max_drift_percent: 2 of 10 devices" in stdout
    assert "devices: pk1/d03, pk1/d07" in stdout
    assert len(published(tmp_path / "out")) == 1


def test_passing_gate_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A gate the run stays within exits 0, prints one line naming the rules it checked and
    records the verdict in the manifest."""
    with emulator() as url:
        job = write_job(tmp_path, url, "[gate]\nmax_drift_percent = 20\nmax_critical = 0\n")
        code = cli.main(["run", str(job)])
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gate")]
    assert lines == ["gate: passed (max_critical=0, max_drift_percent=20%; scope the fleet)"]
    (run_dir,) = published(tmp_path / "out")
    assert manifest_of(run_dir)["gate"] == {
        "verdict": "passed",
        "rules": {"max_critical": 0, "max_drift_percent": 20.0},
        "scope": "the fleet",
        "violations": [],
    }


def test_tripped_gate_is_recorded_in_the_manifest(tmp_path: Path) -> None:
    """A tripped gate's verdict and violations are in manifest.json, as printed."""
    with emulator() as url:
        job = write_job(tmp_path, url, "[gate]\nmax_drift_percent = 10\n")
        assert cli.main(["run", str(job)]) == 1
    (run_dir,) = published(tmp_path / "out")
    gate = manifest_of(run_dir)["gate"]
    assert (gate["verdict"], gate["rules"]) == ("failed", {"max_drift_percent": 10.0})
    assert gate["violations"] == [
        {
            "rule": "max_drift_percent",
            "reason": "2 of 10 devices of the fleet drifting (20.0%, at most 10%)",
            "devices": ["pk1/d03", "pk1/d07"],
            "more_devices": 0,
        }
    ]


def test_run_without_a_gate_prints_none_and_records_verdict_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without [gate] rules nothing about a gate is printed and the verdict is `none`."""
    with emulator() as url:
        assert cli.main(["run", str(write_job(tmp_path, url))]) == 0
    assert "gate:" not in capsys.readouterr().out
    (run_dir,) = published(tmp_path / "out")
    assert manifest_of(run_dir)["gate"]["verdict"] == "none"


def test_unmet_min_coverage_exits_4_and_keeps_latest_on_the_trusted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that misses min_coverage (the default, 0.95) exits 4 and is published, but
    LATEST stays on the newest run that met it, and the summary says so."""
    out = tmp_path / "out"
    with emulator() as url:
        assert cli.main(["run", str(write_job(tmp_path, url))]) == 0
    (trusted,) = published(out)
    capsys.readouterr()
    plan = FaultPlan(failing_devices={"d01": "iot.ota.SomethingBroken"})
    with emulator(faults=plan) as url:
        code = cli.main(["run", str(write_job(tmp_path, url))])
    stdout = capsys.readouterr().out
    assert code == 4
    assert len(published(out)) == 2
    latest = (out / "LATEST").read_text(encoding="utf-8").strip()
    assert out / latest == trusted
    assert "coverage below min_coverage 0.95: 90.0% of the devices" in stdout
    assert f"not trusted: LATEST still names {latest}" in stdout


def test_a_first_run_below_min_coverage_writes_no_latest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no trusted run yet, LATEST is not written at all (a reader finds no run)."""
    plan = FaultPlan(failing_devices={"d01": "iot.ota.SomethingBroken"})
    with emulator(faults=plan) as url:
        code = cli.main(["run", str(write_job(tmp_path, url, "min_coverage = 0.99\n"))])
    out = tmp_path / "out"
    assert code == 4
    assert len(published(out)) == 1
    assert not (out / "LATEST").exists()
    assert "LATEST names no run yet" in capsys.readouterr().out


def test_device_without_module_list_has_no_module_findings(tmp_path: Path) -> None:
    """A device whose module listing failed is an error row, not a `module_missing` finding."""
    plan = FaultPlan(failing_devices={"d01": "iot.ota.SomethingBroken"})
    with emulator(faults=plan) as url:
        assert cli.main(["run", str(write_job(tmp_path, url, "min_coverage = 0.5\n"))]) == 0
    (run_dir,) = published(tmp_path / "out")
    findings = pq.read_table(run_dir / "findings.parquet").to_pylist()
    devices = pq.read_table(run_dir / "devices.parquet").to_pylist()
    assert sorted((f["finding_type"], f["device_name"]) for f in findings) == [
        ("version_drift", "d03"),
        ("version_drift", "d07"),
    ]
    assert [d["audit_status"] for d in devices if d["device_name"] == "d01"] == ["error"]


def test_held_lock_exits_4_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second run on the same OUT exits 4 naming OUT and the holder, and writes no run."""
    out = tmp_path / "out"
    with emulator() as url, lock_held_elsewhere(out) as pid:
        code = cli.main(["run", str(write_job(tmp_path, url))])
    err = capsys.readouterr().err
    assert code == 4
    assert f"another fleetaudit run is writing to {out} (pid {pid})" in err
    assert published(out) == []
    assert not (out / ".staging").exists()


# ---------------------------------------------------------------------------- progress


def test_progress_off_a_terminal_has_no_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With stderr not a terminal, progress is plain lines: no carriage return, no escapes."""
    with emulator() as url:
        assert cli.main(["run", str(write_job(tmp_path, url))]) == 0
    err = capsys.readouterr().err
    assert "fleetaudit start: 0/10 devices" in err
    assert "fleetaudit finish: 10/10 devices" in err
    assert not _CONTROL.search(err)


def test_json_progress_lines_each_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --log-format json every progress line on stderr is one JSON object."""
    with emulator() as url:
        code = cli.main(["run", str(write_job(tmp_path, url)), "--log-format", "json"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 0
    events = [orjson.loads(line) for line in lines]
    assert (events[0]["event"], events[-1]["event"]) == ("start", "finish")
    assert (events[-1]["done"], events[-1]["total"]) == (10, 10)


class TtyStream(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_cli_draws_a_terminal_line_when_stderr_is_a_tty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` with stderr on a terminal redraws one line in place instead of logging lines."""
    tty = TtyStream()
    monkeypatch.setattr(sys, "stderr", tty)
    with emulator() as url:
        assert cli.main(["run", str(write_job(tmp_path, url))]) == 0
    text = tty.getvalue()
    assert text.startswith("\r[")
    assert "10/10 100.0%" in text
    assert text.endswith("\x1b[K\n")
    assert "fleetaudit start" not in text


def test_log_progress_tick_speaks_without_devices() -> None:
    """A tick after the interval writes a progress line although no device finished."""
    clock, stream = FakeClock(0.0), io.StringIO()
    sink = LogProgress(stream, clock, every_s=30.0)
    sink.start(100, 0, ApiStats())
    clock.advance(29.0)
    sink.tick()
    assert len(stream.getvalue().splitlines()) == 1
    clock.advance(2.0)
    sink.tick()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "fleetaudit progress: 0/100 devices" in lines[1]
    assert "elapsed 31s" in lines[1]


def test_terminal_tick_redraws_with_the_time_gone_by() -> None:
    """A tick redraws the terminal line, so throttled calls move the rates while no device ends."""
    clock, stream, stats = FakeClock(0.0), TtyStream(), ApiStats()
    sink = TerminalProgress(stream, clock)
    sink.start(100, 0, stats)
    stats.action("ListOTAUnfinishedTaskByDevice").calls += 4
    stats.action("ListOTAUnfinishedTaskByDevice").attempts += 4
    stats.action("ListOTAUnfinishedTaskByDevice").throttled += 4
    clock.advance(2.0)
    sink.tick()
    last = stream.getvalue().split("\r")[-1]
    assert stream.getvalue().count("\r") == 2
    assert "0/100 0.0% | tasks 2.0/s | throttled 4" in last


# ---------------------------------------------------------------------------- metrics


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[metric_key(f"fleetaudit_{name}", **labels)]


def test_metrics_textfile_describes_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--metrics writes a parsable textfile with devices, findings, calls and last success."""
    metrics = tmp_path / "textfile" / "fleetaudit.prom"
    plan = FaultPlan(failing_devices={"d01": "iot.ota.SomethingBroken"})
    with emulator(faults=plan) as url:
        job = write_job(tmp_path, url, "min_coverage = 0.5\n")
        code = cli.main(["run", str(job), "--metrics", str(metrics)])
    assert code == 0
    samples = metric_samples(metrics.read_text(encoding="utf-8"))
    assert sample(samples, "devices", status="ok") == 9
    assert sample(samples, "devices", status="error") == 1
    assert sample(samples, "findings", type="version_drift", severity="warning") == 2
    assert sample(samples, "api_calls", action="ListOTAModuleVersionsByDevice") == 10
    assert sample(samples, "api_calls", action="ListOTAUnfinishedTaskByDevice") == 10
    assert sample(samples, "api_failures", action="ListOTAModuleVersionsByDevice") == 1
    assert sample(samples, "run_exit_code") == 0
    (manifest_path,) = (tmp_path / "out").glob(f"{RUN_GLOB}/manifest.json")
    finished_at = orjson.loads(manifest_path.read_bytes())["finished_at"]
    finished = datetime.fromisoformat(finished_at.replace("Z", "+00:00")).timestamp()
    assert sample(samples, "last_success_timestamp_seconds") == pytest.approx(finished)


# ---------------------------------------------------------------------------- file modes


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_published_files_respect_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """Every published file, manifest, LATEST, metrics and cancel plan included, gets the mode
    the umask gives (they used to be 0600: node_exporter as another user could not read)."""
    metrics = tmp_path / "textfile" / "fleetaudit.prom"
    previous = os.umask(umask)
    try:
        with emulator() as url:
            job = write_job(tmp_path, url)
            assert cli.main(["run", str(job), "--metrics", str(metrics)]) == 0
        out = tmp_path / "out"
        (run_dir,) = published(out)
        assert cli.main(["cancel", str(run_dir)]) == 0
    finally:
        os.umask(previous)
    files = [out / "LATEST", metrics, *run_dir.iterdir()]
    assert run_dir / "cancel-plan.parquet" in files
    assert run_dir / "manifest.json" in files
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == dict.fromkeys(
        (f.name for f in files), oct(mode)
    )


def test_a_failed_run_writes_metrics_with_its_exit_code(tmp_path: Path) -> None:
    """Wrong credentials (exit 3) and an unreachable platform (exit 4) publish nothing, yet the
    textfile says so, keeping the last success, so that an alert fires on the failure."""
    metrics = tmp_path / "textfile" / "fleetaudit.prom"
    with emulator() as url:
        assert cli.main(["run", str(write_job(tmp_path, url))]) == 0
        with pytest.MonkeyPatch.context() as patch:
            set_env_credentials(patch, KEY_ID, "not-the-secret")
            assert cli.main(["run", str(write_job(tmp_path, url)), "--metrics", str(metrics)]) == 3
    (trusted,) = published(tmp_path / "out")
    finished_at = orjson.loads((trusted / "manifest.json").read_bytes())["finished_at"]
    finished = datetime.fromisoformat(finished_at.replace("Z", "+00:00")).timestamp()
    samples = metric_samples(metrics.read_text(encoding="utf-8"))
    assert sample(samples, "run_exit_code") == 3
    assert metric_key("fleetaudit_run_failure_timestamp_seconds", reason="AuthError") in samples
    assert sample(samples, "last_success_timestamp_seconds") == pytest.approx(finished)

    closed = "http://127.0.0.1:9/"  # the discard port: nothing listens on loopback
    code = cli.main(["run", str(write_job(tmp_path, closed)), "--metrics", str(metrics),
                     "--retry-attempts", "1"])  # fmt: skip
    assert code == 4
    samples = metric_samples(metrics.read_text(encoding="utf-8"))
    assert sample(samples, "run_exit_code") == 4
    assert metric_key("fleetaudit_run_failure_timestamp_seconds", reason="RunIncomplete") in samples
