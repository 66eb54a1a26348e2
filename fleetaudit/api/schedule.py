"""Where call slots are booked: in this process, or in a store every process of the account shares.

The quota belongs to the account: every process and host of it draws from one budget. A
schedule hands out start slots per (account, action) with one rule, `book`: a slot starts at
the later of now and the schedule's next free moment, and moves that moment on by the
caller's interval. Kept in a store that every fleetaudit process of the account uses, the
slots of all of them interleave and their sum stays under the quota.

- `LocalSchedule`: this process alone (`quota_store = "off"`, and the fallback).
- `FileSchedule`: one host, nothing to set up: a small JSON file in a state directory under
  an exclusive `flock` per booking. Chosen over stdlib sqlite3 by measurement (BENCHMARKS.md
  "Shared quota store"): a booking takes about 3 us against sqlite's 23 us (and sqlite would
  need a thread hop off the event loop, ~50 us more), which matters for unpaced runs that
  book thousands of slots a second.
- `RedisSchedule` (redis_schedule.py): across hosts, one Lua script per booking.
- `FallbackSchedule`: a store that fails (unreachable, read-only, corrupt, too slow) is
  dropped for the local schedule with one warning; the run goes on, paced alone.

Booked slots are never released: a killed process leaves at most the few slots it held
ahead (a fraction of a second) unused, and time passing expires them.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import anyio
import orjson

from fleetaudit.setting_kinds import is_redis

log = logging.getLogger(__name__)

OFF = "off"
SCHEDULE_FILE = "quota-schedule.json"
MAX_FILE_BYTES = 1 << 20
LOCK_POLL_S = 0.001
# A booking is one short transaction or one round trip. One that takes longer than this is
# a store in trouble (a lock held by a stopped process, a server that accepts but never
# answers): the run drops it rather than wait on it.
STORE_TIMEOUT_S = 2.0


# The furthest ahead a schedule may legitimately be booked: every process's slots held ahead
# (a few turns of TURN_SECONDS each) at the slowest pace. A next free moment beyond it is a
# clock that stepped back, a host whose clock runs ahead or a hand-edited file: stale.
HORIZON_S = 10.0
HORIZON_SLOTS = 64


def horizon(interval: float) -> float:
    """How far ahead of now a schedule of slots `interval` apart can be booked."""
    return max(HORIZON_S, HORIZON_SLOTS * interval)


def book(next_free: float, now: float, interval: float) -> tuple[float, float]:
    """A slot on a schedule: (its start, the schedule's next free moment after it). Pure.

    A next free moment further ahead than `horizon` is not believed (the run would wait on
    it for as long): the slot starts now.
    """
    start = now if next_free - now > horizon(interval) else max(now, next_free)
    return start, start + interval


class Schedule(Protocol):
    """Books start slots for an action; `reserve` returns the seconds until the slot."""

    @property
    def where(self) -> str:
        """Where the schedule is kept, for the manifest and messages (never a password)."""

    @property
    def degraded(self) -> str | None:
        """Why a shared store was given up for this process's own schedule (None: it wasn't)."""

    async def reserve(self, action: str, interval: float) -> float: ...

    async def aclose(self) -> None: ...


class LocalSchedule:
    """Slots of this process alone, on the event loop's clock."""

    where = OFF
    degraded = None

    def __init__(self) -> None:
        self._next_free: dict[str, float] = {}

    async def reserve(self, action: str, interval: float) -> float:
        now = asyncio.get_running_loop().time()
        start, self._next_free[action] = book(self._next_free.get(action, now), now, interval)
        return start - now

    async def aclose(self) -> None:
        return None


class FileSchedule:
    """Slots shared by every process of the account on this host: a small locked file.

    Each booking takes an exclusive `flock`, reads the file, books and writes it back in
    place: a few microseconds, so it is made on the event loop (no thread hop). A lock that stays
    held (a process stopped while holding it) is waited for without blocking the loop, up
    to STORE_TIMEOUT_S, then the store counts as failed.
    """

    degraded = None

    def __init__(self, directory: Path, account: str) -> None:
        self.where = str(directory / SCHEDULE_FILE)
        self._account = account
        self._directory = directory
        self._fd: int | None = None

    async def reserve(self, action: str, interval: float) -> float:
        fd = self._fd if self._fd is not None else self._open()
        deadline = time.monotonic() + STORE_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"locked for over {STORE_TIMEOUT_S:g} s") from None
                await anyio.sleep(LOCK_POLL_S)
                if self._fd != fd:
                    # Closed meanwhile (another booking failed and dropped the store): the
                    # number may already name another file.
                    raise OSError("the quota store was closed") from None
        try:
            return self._book(fd, f"{self._account}/{action}", interval)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _book(self, fd: int, key: str, interval: float) -> float:
        raw = os.pread(fd, MAX_FILE_BYTES, 0)
        slots = _slots(raw)
        # The wall clock is the one clock the host's processes share.
        now = time.time()
        start, slots[key] = book(slots.get(key, now), now, interval)
        # A schedule whose next free moment has passed says no more than none at all (`book`
        # starts at now either way): it is forgotten, so the file holds only busy ones.
        data = orjson.dumps({k: v for k, v in slots.items() if v > now})
        # Written in place and padded with blanks (JSON ignores them) rather than truncated
        # first: a process killed mid-booking leaves the old text or the new, never half.
        os.pwrite(fd, data.ljust(len(raw)), 0)
        return start - now

    def _open(self) -> int:
        self._directory.mkdir(parents=True, exist_ok=True)
        # 0o666 less the umask: under umask 002 the users of a group share one directory.
        self._fd = os.open(self._directory / SCHEDULE_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        return self._fd

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _slots(raw: bytes) -> dict[str, float]:
    """The file's schedules; anything but an object of numbers is a corrupt store."""
    if not raw.strip():
        return {}
    slots = orjson.loads(raw)
    if not isinstance(slots, dict) or not all(
        isinstance(v, float | int) and not isinstance(v, bool) for v in slots.values()
    ):
        raise ValueError("not a fleetaudit quota schedule (delete it to start a new one)")
    return {str(k): float(v) for k, v in slots.items()}


class FallbackSchedule:
    """A shared schedule that, on its first failure, gives way to this process's own."""

    def __init__(self, shared: Schedule) -> None:
        self._shared: Schedule | None = shared
        self._local = LocalSchedule()
        self.where = shared.where
        self.degraded: str | None = None  # why the shared store was dropped, once it was

    async def reserve(self, action: str, interval: float) -> float:
        if self._shared is not None:
            try:
                return await self._shared.reserve(action, interval)
            # Whatever the store raised (OSError, a corrupt file, redis, a timeout), the run goes on
            # paced alone: the quota store is an optimisation, never a reason to stop.
            except Exception as error:
                await self._drop(error)
        return await self._local.reserve(action, interval)

    async def _drop(self, error: Exception) -> None:
        shared, self._shared = self._shared, None
        if shared is None:
            return  # several actions' bookings failed at once: one warning says it
        self.degraded = f"{type(error).__name__}: {_first_line(error)}"
        log.warning(
            "quota store %s failed (%s); pacing this process alone, so other processes of "
            "the account may be throttled",
            self.where,
            self.degraded,
        )
        with anyio.move_on_after(STORE_TIMEOUT_S, shield=True):
            try:
                await shared.aclose()
            except Exception:  # it failed already: closing it is a courtesy
                log.debug("closing the failed quota store failed too", exc_info=True)

    async def aclose(self) -> None:
        shared, self._shared = self._shared, None
        if shared is None:
            return
        with anyio.move_on_after(STORE_TIMEOUT_S, shield=True):
            try:
                await shared.aclose()
            except Exception:  # the run is done: a store that fails to close changes nothing
                log.debug("closing the quota store failed", exc_info=True)


def account_name(endpoint: str, key_id: str) -> str:
    """The default account name: the endpoint's host and a digest of the key id.

    RAM users of one account have different key ids: they set `account` to one name.
    """
    host = urlsplit(endpoint).hostname or "endpoint"
    digest = hashlib.sha256(f"{endpoint}\n{key_id}".encode()).hexdigest()[:12]
    return f"{host}-{digest}"


def state_directory(environ: Mapping[str, str]) -> Path:
    """`$XDG_STATE_HOME/fleetaudit`, else `~/.local/state/fleetaudit`."""
    base = environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path(environ.get("HOME") or Path.home()) / ".local" / "state"
    return root / "fleetaudit"


def open_schedule(store: str | None, account: str) -> Schedule:
    """The schedule a quota_store value names (None: the state directory), with fallback."""
    if store == OFF:
        return LocalSchedule()
    if store is not None and is_redis(store):
        from fleetaudit.api.redis_schedule import RedisSchedule  # optional extra

        return FallbackSchedule(RedisSchedule(store, account))
    directory = Path(store) if store is not None else state_directory(os.environ)
    return FallbackSchedule(FileSchedule(directory, account))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else "no detail"
