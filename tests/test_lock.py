"""One run at a time per output directory, checked against a real second process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fleetaudit.errors import EXIT_INCOMPLETE, exit_code_for
from fleetaudit.lock import LockHeld, run_lock

# Takes the lock, says so on stdout, and holds it until its stdin closes.
_HOLDER = """
import sys
from pathlib import Path
from fleetaudit.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextmanager
def _held_by_other_process(out: Path) -> Iterator[int]:
    """A child process holding the lock on `out`; yields its pid, releases on exit."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "locked\n"  # readiness line: no sleeping
        yield child.pid
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        child.stdout.close()


def test_second_run_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    """While another process runs on OUT, taking the lock fails at once naming OUT and its pid."""
    with (
        _held_by_other_process(tmp_path) as pid,
        pytest.raises(LockHeld) as caught,
        run_lock(tmp_path),
    ):
        pass
    message = str(caught.value)
    assert message.startswith(f"another fleetaudit run is writing to {tmp_path} (pid {pid})")


def test_lock_is_free_again_after_the_holder_exits(tmp_path: Path) -> None:
    """When the other process ends, the lock can be taken (the file itself stays)."""
    with _held_by_other_process(tmp_path):
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
