"""One writer at a time per directory: an advisory `flock` on a lock file inside it.

`run_lock(out)` guards `OUT/.lock` (one `fleetaudit run` per output directory);
`apply_lock(run_dir)` guards `RUN_DIR/.cancel.lock` (one `fleetaudit cancel --apply` per run
directory: its journal and remediation.parquet have one writer).

`flock` rather than a pid file alone: the kernel drops the lock when the holder exits, even
after `kill -9`, so a crashed run never blocks the next night's. The file is never deleted:
removing it while another process waits on it would let two runs hold "the" lock at once.
The holder's pid is written into it only to make the refusal message useful. Two opens of
the file in one process are two holders too (flock is per open file description).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from fleetaudit.errors import LockHeld, UsageError

LOCK_NAME = ".lock"
APPLY_LOCK_NAME = ".cancel.lock"


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[Path]:
    """Hold `OUT/.lock` for the body; raises LockHeld at once if another process holds it.

    An OUT that cannot be created or written is a configuration error, found before any
    call is made.
    """

    def held(who: str) -> str:
        return (
            f"another fleetaudit run is writing to {out}{who}; "
            "wait for it to finish, or use another --out"
        )

    with _locked(out, LOCK_NAME, held, create=True) as path:
        yield path


@contextlib.contextmanager
def apply_lock(run_dir: Path) -> Iterator[Path]:
    """Hold `RUN_DIR/.cancel.lock` for the body; LockHeld at once if another apply holds it."""

    def held(who: str) -> str:
        return (
            f"another `fleetaudit cancel --apply` is remediating {run_dir}{who}; "
            "nothing was called: wait for it to finish, then apply again"
        )

    with _locked(run_dir, APPLY_LOCK_NAME, held, create=False) as path:
        yield path


@contextlib.contextmanager
def _locked(
    directory: Path, name: str, held: Callable[[str], str], *, create: bool
) -> Iterator[Path]:
    path = directory / name
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UsageError(f"cannot write to {directory}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(held(_holder(fd))) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f" (pid {holder})" if holder.isdigit() else ""
