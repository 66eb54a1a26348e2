"""One run at a time per output directory: an advisory lock on `OUT/.lock`.

`flock` rather than a pid file alone: the kernel drops the lock when the holder exits, even
after `kill -9`, so a crashed run never blocks the next night's. The file is never deleted:
removing it while another process waits on it would let two runs hold "the" lock at once.
The holder's pid is written into it only to make the refusal message useful.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from fleetaudit.errors import LockHeld, UsageError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[Path]:
    """Hold `OUT/.lock` for the body; raises LockHeld at once if another process holds it.

    An OUT that cannot be created or written is a configuration error, found before any
    call is made.
    """
    path = out / LOCK_NAME
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UsageError(f"cannot write to {out}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(_held_message(out, fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _held_message(out: Path, fd: int) -> str:
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    who = f" (pid {holder})" if holder.isdigit() else ""
    return (
        f"another fleetaudit run is writing to {out}{who}; "
        "wait for it to finish, or use another --out"
    )
