"""`make demo`: start the emulator with the sample fleet, audit it for real, show the reports.

Both halves run as the separate processes a user would start by hand, talking HTTP over
loopback, with demo credentials that exist only in the emulator.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from fleetaudit.credentials import KEY_ID_ENV, SECRET_ENV

ROOT = Path(__file__).resolve().parent.parent
DEMO_JOB = ROOT / "jobs" / "demo.toml"
# Demo credentials: known to the emulator started below and to nothing else.
DEMO_ENV = {
    KEY_ID_ENV: "demo-access-key",
    SECRET_ENV: "demo-secret-not-a-real-one",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_emulator(port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    """The emulator with the sample fleet (seed 7, as sample_inputs/demo-fleet.csv)."""
    command = [
        sys.executable,
        "-m",
        "fleetaudit",
        "emulator",
        "--port",
        str(port),
        "--devices",
        "3000",
        "--seed",
        "7",
        "--qps",
        "100",
        "--latency",
        "0.02",
    ]
    emulator = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert emulator.stdout is not None
    for line in emulator.stdout:
        print(f"[emulator] {line.rstrip()}")
        if "listening on" in line:
            return emulator
    emulator.wait()
    raise SystemExit(f"the emulator did not start (exit code {emulator.returncode})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    args = parser.parse_args(argv)
    env = dict(os.environ, **DEMO_ENV)
    port = free_port()
    emulator = start_emulator(port, env)
    try:
        audit = [
            sys.executable,
            "-m",
            "fleetaudit",
            "run",
            str(DEMO_JOB),
            "--endpoint",
            f"http://127.0.0.1:{port}/",
            "--out",
            str(args.out),
        ]
        print(f"$ fleetaudit run {DEMO_JOB.relative_to(ROOT)} --endpoint ... --out {args.out}")
        code = subprocess.call(audit, env=env)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    latest = args.out / "LATEST"
    if latest.is_file():
        print(f"\nThe newest run: {args.out / latest.read_text().strip()}")
        glob = f"{args.out}/run_date=*/run_id=*/findings.parquet"
        query = (
            f"SELECT finding_type, severity, count(*) AS n FROM '{glob}' "
            "GROUP BY ALL ORDER BY n DESC"
        )
        print("Query the findings with DuckDB (make installed it in .venv):")
        print(f'  .venv/bin/python -c "import duckdb; duckdb.sql(\\"{query}\\").show()"')
    print(f"fleetaudit run exited with {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
