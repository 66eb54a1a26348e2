"""One run at a time per output directory, checked against a real second process."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetaudit.errors import EXIT_INCOMPLETE, LockHeld, UsageError, exit_code_for
from fleetaudit.lock import run_lock

from helpers import lock_held_elsewhere


def test_second_run_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    """While another process runs on OUT, taking the lock fails at once naming OUT and its pid."""
    with (
        lock_held_elsewhere(tmp_path) as pid,
        pytest.raises(LockHeld) as caught,
        run_lock(tmp_path),
    ):
        pass
    message = str(caught.value)
    assert message.startswith(f"another fleetaudit run is writing to {tmp_path} (pid {pid})")


def test_lock_is_free_again_after_the_holder_exits(tmp_path: Path) -> None:
    """When the other process ends, the lock can be taken (the file itself stays)."""
    with lock_held_elsewhere(tmp_path):
        pass
    with run_lock(tmp_path) as path:
        assert path == tmp_path / ".lock"


def test_lock_creates_the_output_directory(tmp_path: Path) -> None:
    """A first run on a new OUT creates it to hold the lock."""
    out = tmp_path / "new" / "reports"
    with run_lock(out):
        assert out.is_dir()


def test_sequential_runs_in_one_process_both_get_the_lock(tmp_path: Path) -> None:
    """Releasing the lock on exit lets the next run take it."""
    with run_lock(tmp_path):
        pass
    with run_lock(tmp_path) as path:
        assert path.read_text(encoding="ascii").strip().isdigit()


def test_lock_held_exits_4() -> None:
    """A refused run exits 4: it did not happen, and the scheduler should notice."""
    assert exit_code_for(LockHeld("busy")) == EXIT_INCOMPLETE


def test_unwritable_out_is_a_usage_error(tmp_path: Path) -> None:
    """An OUT that cannot be created is a configuration error (exit 2) naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match="cannot write to") as caught, run_lock(blocker / "out"):
        pass
    assert exit_code_for(caught.value) == 2
