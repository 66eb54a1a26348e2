"""Process plumbing for the benchmarks: the emulator in its own process, timed children.

The emulator and every measured client run as separate processes so that each one's CPU
time and peak RSS can be read apart (wait4 for a child that exits, /proc for the emulator
that stays up). Credentials are benchmark-only and exist only in the emulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCH_ENV = {
    "FLEETAUDIT_ACCESS_KEY_ID": "bench-key",
    "FLEETAUDIT_ACCESS_KEY_SECRET": "bench-secret-not-a-real-one",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def env() -> dict[str, str]:
    """The environment every benchmark process runs with."""
    return dict(os.environ, **BENCH_ENV, PYTHONPATH=str(ROOT))


@dataclass(frozen=True)
class ChildRun:
    """One measured child process: wall and CPU seconds, peak RSS, exit code, stdout."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    exit_code: int
    stdout: str


def run_child(command: Sequence[str], *, cpu_list: str | None = None) -> ChildRun:
    """Run `command` to completion; its own rusage comes from wait4, not from RUSAGE_CHILDREN."""
    if cpu_list:
        command = ["taskset", "-c", cpu_list, *command]
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, env=env(), stdout=subprocess.PIPE, stderr=errors, text=True
        )
        assert proc.stdout is not None
        # Read stdout to its end (a full pipe would block the child), then reap it ourselves:
        # Popen.wait would reap it too and lose the child's own rusage.
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode not in (0, 1):  # 1: the gate tripped, still a finished run
            errors.seek(0)
            sys.stderr.write(errors.read()[-4000:])
            raise RuntimeError(f"{' '.join(command[:4])} ... exited with {proc.returncode}")
    return ChildRun(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024.0,
        exit_code=proc.returncode,
        stdout=stdout,
    )


def write_devices(count: int, seed: int, path: Path) -> Path:
    """The synthetic fleet's device list (cached: the same count and seed, the same file)."""
    if not path.exists():
        subprocess.run(
            [
                PYTHON,
                "-m",
                "fleetaudit",
                "emulator",
                "--devices",
                str(count),
                "--seed",
                str(seed),
                "--write-devices",
                str(path),
            ],
            env=env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return path


@dataclass
class Emulator:
    """A running emulator process and its base URL."""

    proc: subprocess.Popen[str]
    url: str

    def cpu_s(self) -> float:
        """CPU seconds the emulator has used so far (user + system, from /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextmanager
def emulator(
    devices: int,
    seed: int,
    *,
    qps: float = 0.0,
    latency: float = 0.0,
    error_rate: float = 0.0,
    cpu_list: str | None = None,
) -> Iterator[Emulator]:
    """The emulator in its own process on a free loopback port, stopped on exit."""
    command = [
        PYTHON, "-m", "fleetaudit", "emulator", "--port", "0", "--devices", str(devices),
        "--seed", str(seed), "--qps", str(qps), "--latency", str(latency),
        "--error-rate", str(error_rate),
    ]  # fmt: skip
    if cpu_list:
        command = ["taskset", "-c", cpu_list, *command]
    proc = subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if "listening on" in line:
                url = line.split("listening on", 1)[1].strip()
                break
        else:
            raise RuntimeError(f"the emulator did not start (exit {proc.wait()})")
        yield Emulator(proc, url)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
