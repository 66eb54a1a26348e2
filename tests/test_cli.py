"""The command line end to end: auth and input failures, `summary`, and `run --help`."""

from __future__ import annotations

import importlib.metadata
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from fleetaudit import cli
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.fleet import StaticFleet

from helpers import (
    FIXED_NOW,
    UNLIMITED,
    FleetBuilder,
    emulator_url,
    set_env_credentials,
    write_device_list,
)

KEY_ID = "cli-key"
SECRET = "cli-Secret-51be07"
NOW_MS = int(FIXED_NOW * 1000)
REPORTS_MD = Path(__file__).resolve().parents[1] / "docs" / "REPORTS.md"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def tiny_fleet(size: int = 30) -> StaticFleet:
    """`size` devices of product pk1 on version 1.0.0, and firmware F1 (2.0.0)."""
    fleet = FleetBuilder().firmware(name="fw", dest="2.0.0", size=1)
    for i in range(size):
        fleet.device(f"d{i:02d}", {"default": "1.0.0"})
    return fleet.build()


def write_policy(tmp_path: Path, firmware_id: str = "F1") -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(
        f'[[targets]]\nproduct_key = "pk1"\nmodule = "default"\nfirmware_id = "{firmware_id}"\n',
        encoding="utf-8",
    )
    return path


def run_argv(url: str, devices: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--endpoint", url, "--devices", str(devices), "--out", str(out), *extra]


def requests_seen(app: web.Application) -> int:
    """Every request the emulator received, whatever became of it."""
    stats = app[STATS_KEY]
    counters = (stats.served, stats.throttled, stats.faults, stats.rejected)
    return sum(sum(counter.values()) for counter in counters)


def set_credentials(monkeypatch: pytest.MonkeyPatch, secret: str = SECRET) -> None:
    set_env_credentials(monkeypatch, KEY_ID, secret)


@pytest.mark.parametrize(("with_policy", "most"), [(True, 1), (False, 8)])
def test_wrong_secret_stops_at_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    with_policy: bool,
    most: int,
) -> None:
    """A wrong secret exits 3 naming the cause, leaves no run and sends no retries."""
    set_credentials(monkeypatch, secret="not-the-secret")
    fleet = tiny_fleet()
    out = tmp_path / "out"
    extra = ["--concurrency", "4", "--qps", "1000"]
    if with_policy:
        extra += ["--policy", str(write_policy(tmp_path))]
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        code = cli.main(
            run_argv(url, write_device_list(tmp_path / "devices.csv", fleet), out, *extra)
        )
    err = capsys.readouterr().err
    assert code == 3
    assert "SignatureDoesNotMatch" in err
    assert "not-the-secret" not in err
    assert not list(out.glob("run_date=*"))
    # No LATEST and no staged parts: only the run lock, which is never deleted (see lock.py).
    assert [p.name for p in out.rglob("*") if p.is_file()] == [".lock"]
    seen = requests_seen(app)
    assert 1 <= seen <= most
    assert dict(app[STATS_KEY].rejected) == {"SignatureDoesNotMatch": seen}


@pytest.mark.parametrize("given", [None, "iot-wrong"])
def test_missing_or_wrong_instance_id_stops_at_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    given: str | None,
) -> None:
    """Against an instance that has an id, a run without it or with another exits 3 naming
    the setting, leaves no run and stops after the first answers."""
    set_credentials(monkeypatch)
    fleet = tiny_fleet()
    out = tmp_path / "out"
    extra = ["--concurrency", "4", "--qps", "1000", "--policy", str(write_policy(tmp_path))]
    if given is not None:
        extra += ["--iot-instance-id", given]
    with emulator_url(
        fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED, iot_instance_id="iot-06z00ab"
    ) as (url, app):
        code = cli.main(
            run_argv(url, write_device_list(tmp_path / "devices.csv", fleet), out, *extra)
        )
    err = capsys.readouterr().err
    assert code == 3
    assert "iot.system.InstanceNotFound" in err
    assert "--iot-instance-id" in err
    assert not list(out.glob("run_date=*"))
    assert 1 <= requests_seen(app) <= 4


def test_right_instance_id_is_sent_on_every_call_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the instance's id the run is complete, and the manifest records the id as part of
    the run's identity (a resume with another id is refused)."""
    set_credentials(monkeypatch)
    fleet = tiny_fleet(3)
    out = tmp_path / "out"
    extra = ["--qps", "1000", "--policy", str(write_policy(tmp_path))]
    extra += ["--iot-instance-id", "iot-06z00ab"]
    with emulator_url(
        fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED, iot_instance_id="iot-06z00ab"
    ) as (url, app):
        code = cli.main(
            run_argv(url, write_device_list(tmp_path / "devices.csv", fleet), out, *extra)
        )
    assert code == 0
    assert sum(app[STATS_KEY].served.values()) > 0
    run_dir = out / (out / "LATEST").read_text(encoding="utf-8").strip()
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["config"]["iot_instance_id"] == "iot-06z00ab"
    assert manifest["inputs"]["settings"]["iot_instance_id"] == "iot-06z00ab"


def test_malformed_device_list_calls_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad row exits 2 naming the file and line, before any request is sent."""
    set_credentials(monkeypatch)
    devices = tmp_path / "devices.csv"
    devices.write_text("product_key,device_name\npk1,d00\npk1,\npk1,d01\n", encoding="utf-8")
    out = tmp_path / "out"
    with emulator_url(tiny_fleet(), credentials={KEY_ID: SECRET}) as (url, app):
        code = cli.main(run_argv(url, devices, out))
    err = capsys.readouterr().err
    assert code == 2
    assert str(devices) in err
    assert "line 3" in err
    assert requests_seen(app) == 0
    assert not list(out.glob("run_date=*"))


@pytest.fixture
def finished_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """OUT after one complete run over a three-device fleet (LATEST names it)."""
    set_credentials(monkeypatch)
    fleet = tiny_fleet(3)
    out = tmp_path / "out"
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, _):
        assert cli.main(run_argv(url, devices, out, "--qps", "1000")) == 0
    return out


@pytest.mark.parametrize("given", ["run_dir", "out", "out/LATEST"])
def test_summary_prints_the_run(
    finished_out: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """`fleetaudit summary` of a run directory, of OUT, or of OUT/LATEST prints the run
    LATEST names and exits 0."""
    run_dir = finished_out / (finished_out / "LATEST").read_text(encoding="utf-8").strip()
    path = {"run_dir": run_dir, "out": finished_out, "out/LATEST": finished_out / "LATEST"}
    capsys.readouterr()
    assert cli.main(["summary", str(path[given])]) == 0
    assert run_dir.name.removeprefix("run_id=") in capsys.readouterr().out


def test_summary_of_a_non_run_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fleetaudit summary` of a directory without manifest.json or LATEST exits 2 and says
    what it accepts."""
    assert cli.main(["summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a finished run directory" in err
    assert "OUT/LATEST" in err


@pytest.mark.parametrize("case", ["missing", "dangling", "empty"])
def test_summary_of_an_unresolvable_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """A path that does not exist, or a LATEST naming no run (or nothing), exits 2 naming it."""
    latest = tmp_path / "LATEST"
    if case == "dangling":
        latest.write_text("run_date=2026-01-01/run_id=gone\n", encoding="utf-8")
    elif case == "empty":
        latest.write_text("", encoding="utf-8")
    given = tmp_path / "nowhere" if case == "missing" else latest
    assert cli.main(["summary", str(given)]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    if case != "missing":  # OUT holding that LATEST is refused the same way
        assert cli.main(["summary", str(tmp_path)]) == 2


def contract_run_options() -> list[str]:
    """The options of `fleetaudit run` in docs/REPORTS.md's synopsis."""
    text = REPORTS_MD.read_text(encoding="utf-8")
    synopsis = text[text.index("fleetaudit run ") : text.index("fleetaudit emulator ")]
    return re.findall(r"--[a-z][a-z-]*", synopsis)


def test_run_help_lists_the_contract_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Every option of the contract's `fleetaudit run` synopsis appears in `run --help`."""
    options = contract_run_options()
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--help"])
    help_text = capsys.readouterr().out
    assert exited.value.code == 0
    assert len(options) >= 8
    assert [o for o in options if o not in help_text] == []
    assert "JOB.toml" in help_text


def test_unknown_firmware_target_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy naming firmware the platform does not know exits 2 before any device call."""
    set_credentials(monkeypatch)
    fleet = tiny_fleet(5)
    policy = write_policy(tmp_path, firmware_id="F404")
    out = tmp_path / "out"
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        argv = run_argv(
            url, write_device_list(tmp_path / "devices.csv", fleet), out, "--policy", str(policy)
        )
        code = cli.main(argv)
        device_calls = app[STATS_KEY].served["ListOTAModuleVersionsByDevice"]
    assert code == 2
    assert "F404" in capsys.readouterr().err
    assert device_calls == 0
    assert [p.name for p in out.rglob("*") if p.is_file()] == [".lock"]


def test_unreachable_endpoint_stops_the_run_after_the_first_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing answering, the run stops once a device fails without any answer (exit 4)."""
    set_credentials(monkeypatch)
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    job = tmp_path / "job.toml"
    job.write_text("retry_attempts = 2\n", encoding="utf-8")
    out = tmp_path / "out"
    devices = write_device_list(tmp_path / "devices.csv", tiny_fleet(200))
    argv = ["run", str(job), *run_argv(f"http://127.0.0.1:{port}/", devices, out)[1:]]
    code = cli.main([*argv, "--concurrency", "2"])
    err = capsys.readouterr().err
    assert code == 4
    assert f"no answer from http://127.0.0.1:{port}/ (ConnectionError)" in err
    assert [p.name for p in out.rglob("*") if p.is_file()] == [".lock"]


def test_version_flag_prints_the_installed_distribution_version() -> None:
    """`fleetaudit --version` prints the version pyproject.toml gave the installed distribution."""
    script = Path(sys.executable).with_name("fleetaudit")
    done = subprocess.run([script, "--version"], check=True, capture_output=True, text=True)
    installed = importlib.metadata.version("fleetaudit")
    declared = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    assert (done.stdout, installed) == (f"fleetaudit {declared}\n", declared)


@pytest.mark.parametrize(
    ("present", "named"),
    [
        ({}, "FLEETAUDIT_ACCESS_KEY_ID and FLEETAUDIT_ACCESS_KEY_SECRET"),
        ({"FLEETAUDIT_ACCESS_KEY_ID": KEY_ID}, "set FLEETAUDIT_ACCESS_KEY_SECRET in"),
        ({"FLEETAUDIT_ACCESS_KEY_SECRET": SECRET}, "set FLEETAUDIT_ACCESS_KEY_ID in"),
    ],
)
def test_run_without_credentials_in_the_environment_is_a_usage_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    present: dict[str, str],
    named: str,
) -> None:
    """`run` lacking the key id or secret in the environment exits 2 naming it, calling nothing."""
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    fleet = tiny_fleet(3)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        code = cli.main(
            run_argv(url, write_device_list(tmp_path / "devices.csv", fleet), tmp_path / "out")
        )
    assert code == 2
    assert named in capsys.readouterr().err
    assert requests_seen(app) == 0
