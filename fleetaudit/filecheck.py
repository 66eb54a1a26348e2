"""The files a run is given, checked before it locks OUT or opens them: regular files only.

A FIFO given as the device list used to block inside `open()` while the run held
`OUT/.lock`, with SIGTERM and SIGINT unheard; a directory or a device is no better. So
every file a run reads (job file, policy, device list) is `stat`ed first and refused unless
it is a regular file, and then opened without blocking and checked again on the open
descriptor, so that a file swapped for a FIFO between the two cannot hang the run either.
Every problem is a `UsageError` (exit 2) naming the file (or the setting).
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

from fleetaudit.errors import InputError, UsageError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refusal(path: Path, mode: int) -> InputError:
    return InputError(str(path), None, None, f"not a regular file ({_kind(mode)}): give a file")


def check_regular_file(path: Path) -> None:
    """Refuse `path` unless it is an existing regular file (symbolic links are followed)."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise InputError(str(path), None, None, f"cannot read: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise _refusal(path, mode)


def open_regular_file(path: Path) -> IO[bytes]:
    """`path` opened for reading in binary, refused (never opened) unless a regular file."""
    check_regular_file(path)
    try:
        # O_NONBLOCK: should a FIFO have replaced the file since the check, open() returns
        # at once instead of waiting for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise InputError(str(path), None, None, f"cannot read: {error.strerror or error}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refusal(path, mode)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_output_file(path: Path, setting: str) -> None:
    """Refuse an output file the run could not write at its end, before anything is called.

    The file may be absent (it is created) but not a directory or anything else that is
    not a regular file; its directory is created if missing (as OUT is) and must accept a
    new file, which is how the file is replaced (a temporary file renamed over it).
    """
    try:
        mode: int | None = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise UsageError(f"{setting} {path}: cannot use: {error.strerror or error}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{setting} {path}: is {_kind(mode)}: give the path of a file")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # A real probe rather than os.access: it also sees read-only mounts and ACLs.
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.probe-"):
            pass
    except OSError as error:
        problem = error.strerror or str(error)
        raise UsageError(f"{setting} {path}: cannot write in {parent}: {problem}") from None
