"""`fleetaudit plan`: calls per action and time per strategy, from the discovery listings only."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sweep_e2e import KEY_ID, SECRET, sweep_fleet, write_devices

from fleetaudit import cli
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.plan import Discovery, estimate
from fleetaudit.terms import Action

from helpers import UNLIMITED, emulator_url, set_env_credentials

QUOTAS: dict[str, float] = {action.value: 10.0 for action in Action}


def test_estimate_counts_calls_per_strategy() -> None:
    """Per device: two calls a device; by jobs: the listings, 4 per job, modules if full."""
    discovery = Discovery({"pkA": 600, "pkB": 400}, firmware=12, jobs=30, firmware_pages=2,
                          job_pages=12)  # fmt: skip
    plans = {e.name: e for e in estimate(discovery, QUOTAS)}
    assert plans["devices, full"].calls[Action.LIST_UNFINISHED_TASKS] == 1000
    assert plans["devices, tasks only"].calls.get(Action.LIST_MODULE_VERSIONS) is None
    assert plans["jobs, tasks only"].calls == {
        Action.LIST_FIRMWARE: 2, Action.LIST_JOBS_BY_FIRMWARE: 12, Action.LIST_TASKS_BY_JOB: 120
    }  # fmt: skip
    assert plans["jobs, tasks only"].seconds == pytest.approx((2 + 12 + 120) / 10)
    assert plans["devices, full"].seconds == pytest.approx(100.0)
    assert plans["jobs, full"].seconds == pytest.approx(100.0 + 13.4)


@pytest.mark.parametrize("command", [["plan"], ["run", "--plan"]])
def test_plan_calls_only_the_discovery_listings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """The plan reads firmware and jobs, prints every strategy, and writes no report."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)
    devices = write_devices(tmp_path / "devices.csv", sweep_fleet())
    out = tmp_path / "out"
    with emulator_url(sweep_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        argv = [*command, "--endpoint", url, "--devices", str(devices), "--out", str(out)]
        assert cli.main(argv) == 0
        served = app[STATS_KEY].served
    assert set(served) == {Action.LIST_FIRMWARE, Action.LIST_JOBS_BY_FIRMWARE}
    assert served[Action.LIST_FIRMWARE] == 2  # one page per product
    printed = capsys.readouterr().out
    assert "16 devices in 2 products; 6 firmware and 9 jobs" in printed
    assert "ListOTATaskByJob" in printed
    assert "jobs, tasks only" in printed
    assert not out.exists()
