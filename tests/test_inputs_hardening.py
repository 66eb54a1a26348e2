"""Hostile inputs to `fleetaudit run`: FIFOs and other non-files, huge lines, empty lists, bad
output paths and endpoints; each refused with exit 2 naming it, before any call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetaudit import cli
from fleetaudit.filecheck import open_regular_file

from helpers import (
    UNLIMITED,
    FleetBuilder,
    emulator_url,
    requests_seen,
    set_env_credentials,
    write_device_list,
)

KEY_ID = "inputs-key"
SECRET = "inputs-Secret-7d1e0a"
# Far longer than a refused run takes (about a second), far shorter than a hang.
CHILD_TIMEOUT_S = 60


def run_child(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`fleetaudit ARGV` in a child process; a hang fails the test at the timeout."""
    env = dict(os.environ, FLEETAUDIT_ACCESS_KEY_ID=KEY_ID, FLEETAUDIT_ACCESS_KEY_SECRET=SECRET)
    return subprocess.run(
        [sys.executable, "-m", "fleetaudit", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )


def write_inputs(tmp_path: Path) -> dict[str, Path]:
    """A valid job file, policy and device list."""
    fleet = FleetBuilder().device("d1", {"default": "1.0.0"}).build()
    policy = tmp_path / "policy.toml"
    policy.write_text('[stalled_after]\nQUEUED = "1h"\n', encoding="utf-8")
    job = tmp_path / "job.toml"
    job.write_text("concurrency = 2\n", encoding="utf-8")
    return {"job": job, "policy": policy, "devices": write_device_list(tmp_path / "d.csv", fleet)}


@pytest.mark.parametrize("which", ["devices", "policy", "job"])
def test_fifo_input_is_refused_before_the_lock(tmp_path: Path, which: str) -> None:
    """A FIFO as the device list, policy or job file exits 2 naming it, and takes no lock."""
    inputs = write_inputs(tmp_path)
    fifo = tmp_path / f"fifo{inputs[which].suffix}"
    os.mkfifo(fifo)
    inputs[which] = fifo
    out = tmp_path / "out"
    # Port 9 (discard): nothing may be called anyway.
    argv = ["run", str(inputs["job"]), "--endpoint", "http://127.0.0.1:9/"]
    argv += ["--devices", str(inputs["devices"]), "--policy", str(inputs["policy"])]
    done = run_child([*argv, "--out", str(out)])
    assert done.returncode == 2, done.stderr
    assert f"{fifo}: not a regular file (a FIFO" in done.stderr
    assert not out.exists()  # the lock (and OUT itself) comes later


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_device_list_that_is_no_file_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """A directory or a character device as the device list exits 2 naming it."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)
    if kind == "directory":
        devices = tmp_path / "devices.csv"
        devices.mkdir()
    else:
        devices = tmp_path / "devices.csv"
        devices.symlink_to("/dev/null")
    out = tmp_path / "out"
    code = cli.main(["run", "--endpoint", "http://127.0.0.1:9/", "--devices", str(devices),
                     "--out", str(out)])  # fmt: skip
    assert code == 2
    expected = "a directory" if kind == "directory" else "a character device"
    assert f"{devices}: not a regular file ({expected})" in capsys.readouterr().err
    assert not out.exists()


def test_regular_file_opens(tmp_path: Path) -> None:
    """A regular file opens for blocking reads, its whole content readable."""
    path = tmp_path / "list.csv"
    path.write_bytes(b"a\nb\n")
    with open_regular_file(path) as file:
        assert os.get_blocking(file.fileno())
        assert file.read() == b"a\nb\n"


@pytest.mark.parametrize(
    ("name", "text"),
    [("devices.csv", "product_key,device_name,iot_id\n"), ("devices.jsonl", ""),
     ("devices.csv", "product_key,device_name\n\n\n")],
)  # fmt: skip
def test_empty_device_list_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
) -> None:
    """A header-only or zero-row list exits 2 naming it; nothing is called or published."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)
    devices = tmp_path / name
    devices.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    fleet = FleetBuilder().device("d1").build()
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        code = cli.main(["run", "--endpoint", url, "--devices", str(devices), "--out", str(out)])
        assert requests_seen(app) == 0
    assert code == 2
    assert f"{devices}: no devices; a truncated export?" in capsys.readouterr().err
    assert not (out / "LATEST").exists()
    assert not list(out.glob("run_date=*"))


def test_empty_device_list_runs_when_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --allow-empty-device-list a header-only list publishes an empty run (exit 0)."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)
    devices = tmp_path / "devices.csv"
    devices.write_text("product_key,device_name\n", encoding="utf-8")
    out = tmp_path / "out"
    fleet = FleetBuilder().device("d1").build()
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, _):
        argv = ["run", "--endpoint", url, "--devices", str(devices), "--out", str(out)]
        assert cli.main([*argv, "--allow-empty-device-list"]) == 0
    assert (out / "LATEST").is_file()


@pytest.mark.parametrize("problem", ["a directory", "under a file"])
def test_metrics_path_that_cannot_be_written_is_refused_before_any_call(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    """--metrics naming a directory (or a path under a file, which no one can create) exits
    2 naming it before any call; it used to run the whole audit and then exit 4."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)
    inputs = write_inputs(tmp_path)
    metrics = tmp_path / "metrics"
    if problem == "a directory":
        metrics.mkdir()
    else:
        metrics.write_text("", encoding="utf-8")
        metrics = metrics / "fleetaudit.prom"
    out = tmp_path / "out"
    fleet = FleetBuilder().device("d1", {"default": "1.0.0"}).build()
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        argv = ["run", str(inputs["job"]), "--endpoint", url, "--devices", str(inputs["devices"])]
        code = cli.main([*argv, "--out", str(out), "--metrics", str(metrics)])
        assert requests_seen(app) == 0
    assert code == 2
    assert f"--metrics {metrics}" in capsys.readouterr().err
    assert not list(out.glob("run_date=*"))
