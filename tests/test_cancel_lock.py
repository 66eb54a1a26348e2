"""One `fleetaudit cancel --apply` per run directory, checked against a real second process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fleetaudit.errors import EXIT_INCOMPLETE, LockHeld
from fleetaudit.lock import apply_lock

from cancel_helpers import (
    apply_command,
    audit_findings,
    cancel,
    emulator,
    make_fleet,
    make_run_dir,
    statuses,
)


def apply_in_subprocess(run: Path, url: str) -> subprocess.CompletedProcess[str]:
    """`fleetaudit cancel RUN --apply` in a child process, run to its end."""
    argv, env = apply_command(run, url)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_second_apply_exits_4_and_calls_nothing(tmp_path: Path) -> None:
    """While an apply holds RUN_DIR/.cancel.lock, another apply exits 4 and sends no request."""
    fleet = make_fleet()
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        with apply_lock(run):
            result = apply_in_subprocess(run, url)
        assert sum(stats.served.values()) + sum(stats.rejected.values()) == 0
        assert stats.cancel_calls == 0
    assert result.returncode == EXIT_INCOMPLETE
    assert f"another `fleetaudit cancel --apply` is remediating {run} (pid {os.getpid()})" in (
        result.stderr
    )
    assert "nothing was called" in result.stderr
    assert "Cancel plan" not in result.stdout  # refused before it printed any progress
    assert not (run / "remediation.parquet").exists()
    assert statuses(fleet)["t-1"] == "QUEUED"


def test_apply_after_the_holder_finishes_proceeds(tmp_path: Path) -> None:
    """Once the other apply released the lock, the next one runs normally."""
    fleet = make_fleet()
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        with apply_lock(run):
            pass
        result = apply_in_subprocess(run, url)
        assert stats.cancel_calls == 2
    assert result.returncode in (0, 1), result.stderr
    assert statuses(fleet)["t-1"] == "CANCELED"


async def test_apply_in_process_is_refused_while_locked(tmp_path: Path) -> None:
    """The library path raises LockHeld too, before any request."""
    fleet = make_fleet()
    with emulator(fleet) as (url, stats):
        run = make_run_dir(tmp_path, audit_findings(), url)
        with apply_lock(run), pytest.raises(LockHeld, match="nothing was called"):
            await cancel(run, apply=True)
        assert sum(stats.served.values()) == 0


async def test_dry_run_is_not_blocked_by_an_apply(tmp_path: Path) -> None:
    """A dry run calls nothing and writes only the plan, so it does not need the lock."""
    fleet = make_fleet()
    with emulator(fleet) as (url, _):
        run = make_run_dir(tmp_path, audit_findings(), url)
        with apply_lock(run):
            code, _ = await cancel(run, apply=False)
    assert code == 0
