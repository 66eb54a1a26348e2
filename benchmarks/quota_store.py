"""Which embedded store for the shared quota schedule: a locked file or sqlite3.

Each booking reads the (account, action) schedule's next free moment, books a slot and
writes the moment back, atomically against other processes. Measured here: the time of
one booking alone, and bookings per second with three processes booking at once, for
- `FileSchedule` (what a run uses): a JSON file under `fcntl.flock`, on the event loop;
- sqlite3 with an immediate transaction per booking, called directly (the candidate not
  taken; on the event loop it would need a thread hop, about 50 us more a booking).

    .venv/bin/python benchmarks/quota_store.py [--bookings 3000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from fleetaudit.api.schedule import FileSchedule, book


def file_bookings(directory: str, count: int) -> float:
    """Seconds for `count` bookings through FileSchedule (as a run makes them)."""

    async def main() -> float:
        schedule = FileSchedule(Path(directory), "bench")
        await schedule.reserve("A", 1e-6)  # open the file outside the timing
        started = time.perf_counter()
        for _ in range(count):
            await schedule.reserve("A", 1e-6)
        elapsed = time.perf_counter() - started
        await schedule.aclose()
        return elapsed

    return anyio.run(main)


def sqlite_bookings(directory: str, count: int) -> float:
    """Seconds for `count` bookings in sqlite3, one immediate transaction each."""
    db = sqlite3.connect(Path(directory) / "quota.sqlite3", isolation_level=None, timeout=5)
    db.execute("PRAGMA synchronous = OFF")
    db.execute(
        "CREATE TABLE IF NOT EXISTS slots (account TEXT, action TEXT, next_free REAL,"
        " PRIMARY KEY (account, action))"
    )
    started = time.perf_counter()
    for _ in range(count):
        db.execute("BEGIN IMMEDIATE")
        now = time.time()
        row = db.execute(
            "SELECT next_free FROM slots WHERE account = 'bench' AND action = 'A'"
        ).fetchone()
        _, next_free = book(float(row[0]) if row else now, now, 1e-6)
        db.execute("INSERT OR REPLACE INTO slots VALUES ('bench', 'A', ?)", (next_free,))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


STORES: dict[str, Callable[[str, int], float]] = {
    "FileSchedule: JSON file under flock (chosen)": file_bookings,
    "sqlite3, immediate transaction, no thread hop": sqlite_bookings,
}


def _worker(store: str, directory: str, count: int, queue: multiprocessing.Queue[float]) -> None:
    queue.put(STORES[store](directory, count))


def contended(store: str, directory: str, count: int, processes: int) -> float:
    """Bookings per second, all processes together, booking at once."""
    queue: multiprocessing.Queue[float] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_worker, args=(store, directory, count, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    longest = max(queue.get(timeout=300) for _ in workers)
    for worker in workers:
        worker.join()
    return processes * count / longest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print("| store | one process: us per booking | 3 processes at once: bookings/s |")
    print("|---|---|---|")
    for store, alone in STORES.items():
        single, together = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as directory:
                single.append(alone(directory, args.bookings) / args.bookings * 1e6)
            with tempfile.TemporaryDirectory() as directory:
                together.append(contended(store, directory, args.bookings, 3))
        print(f"| {store} | {statistics.median(single):.0f} | {statistics.median(together):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
