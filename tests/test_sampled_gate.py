"""Sampled gates end to end: versions from a uniform sample of the gate's scope, tasks from
the complete sweep, the drift share judged by its 95% interval."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from fleetaudit import cli
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.synthetic import SyntheticFleet
from fleetaudit.terms import Action

from helpers import (
    TEST_KEY_ID,
    TEST_SECRET,
    UNLIMITED,
    emulator_url,
    set_env_credentials,
    write_device_list,
)

NOW_ISO = "2024-11-19T09:47:43Z"
FLEET = SyntheticFleet(3000, seed=21)
PRODUCT = FLEET.product_keys[0]
SCOPE = sum(1 for pk, _, _ in FLEET.iter_device_list() if pk == PRODUCT)


def sampled_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample: str, *extra: str
) -> tuple[int, dict[str, Any], Path, dict[str, int]]:
    """A pre-rollout gate on PRODUCT with `sample`; (exit code, manifest, run dir, calls)."""
    set_env_credentials(monkeypatch, TEST_KEY_ID, TEST_SECRET)
    devices = write_device_list(tmp_path / "devices.csv", FLEET)
    job = tmp_path / "gate.toml"
    job.write_text(
        f'tasks_from = "jobs"\nsample = "{sample}"\n[gate]\nproduct_key = "{PRODUCT}"\n'
        "max_drift_percent = 50\nfail_on_unfinished_tasks = false\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    with emulator_url(FLEET, quotas=UNLIMITED) as (url, app):
        argv = ["run", str(job), "--endpoint", url, "--devices", str(devices), "--out",
                str(out), "--now", NOW_ISO, "--qps", "1000", *extra]  # fmt: skip
        code = cli.main(argv)
        calls = dict(app[STATS_KEY].served)
    run_dir = out / (out / "LATEST").read_text(encoding="utf-8").strip()
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return code, manifest, run_dir, calls


def test_a_sampled_gate_reads_the_versions_of_its_sample_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 of the product's devices are asked for versions; tasks come from the sweep for
    every device; the gate prints the drift share with its interval."""
    code, manifest, run_dir, calls = sampled_run(tmp_path, monkeypatch, "200")
    assert code == 0
    assert calls[Action.LIST_MODULE_VERSIONS] == 200
    assert calls.get(Action.LIST_UNFINISHED_TASKS, 0) == 0
    devices = pq.read_table(run_dir / "devices.parquet").to_pylist()
    read = [d for d in devices if d["module_count"] is not None]
    assert len(read) == 200
    assert {d["product_key"] for d in read} == {PRODUCT}
    assert len(devices) == 3000  # every device listed, tasks known for all
    answered = sum(1 for d in read if d["audit_status"] == "ok")  # not_found ones drop out
    sample = manifest["gate"]["sample"]
    assert (sample["size"], sample["population"], sample["audited"]) == (200, SCOPE, answered)
    assert re.fullmatch(r"\d+\.\d% \(\d+\.\d-\d+\.\d%\)", sample["drift"])
    printed = f"sampled drift {sample['drift']} from {answered} of {SCOPE} devices"
    assert printed in capsys.readouterr().out


def test_a_percentage_sample_and_its_seed_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sample = "10%" of the scope, rounded up; the seed that drew it is in the manifest."""
    _, manifest, _, calls = sampled_run(tmp_path, monkeypatch, "10%")
    size = -(-SCOPE // 10)
    assert calls[Action.LIST_MODULE_VERSIONS] == size
    assert manifest["gate"]["sample"]["size"] == size
    assert isinstance(manifest["gate"]["sample"]["seed"], int)
    assert manifest["config"]["sample"] == "10%"


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "a whole number of devices from 1"), ("120%", "a percentage"), ("x", "from 1")],
)
def test_a_bad_sample_is_a_usage_error(
    value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sample of 0, over 100% or not a number exits 2 naming --sample, before any call."""
    argv = ["run", "--endpoint", "http://127.0.0.1:1/", "--devices", str(tmp_path / "d.csv"),
            "--sample", value]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--sample" in err
    assert message in err


@pytest.mark.parametrize(
    ("gate", "extra", "message"),
    [
        ("", (), "max_drift_percent, which is not set"),
        ("max_drift_percent = 5\n", ("--audit", "tasks"), "which audit = tasks does not read"),
    ],
)
def test_a_sample_needs_a_drift_rule_and_module_versions(
    gate: str,
    extra: tuple[str, ...],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A sample without the drift rule it serves, or with no versions read, is exit 2."""
    job = tmp_path / "job.toml"
    job.write_text(f"[gate]\n{gate}", encoding="utf-8")
    argv = ["run", str(job), "--endpoint", "http://127.0.0.1:1/", "--devices",
            str(tmp_path / "d.csv"), "--sample", "10", *extra]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "sample" in err
    assert message in err
