"""`make demo`: start the emulator with the sample fleet, audit it for real on two nights
(cancelling the stalled tasks in between), show what changed and where report.html is.

Both halves run as the separate processes a user would start by hand, talking HTTP over
loopback, with demo credentials that exist only in the emulator.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
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
    endpoint = f"http://127.0.0.1:{port}/"
    emulator = start_emulator(port, env)
    first: Path | None = None
    try:
        code = _audit(args.out, endpoint, env, "the first night")
        first = _latest(args.out)
        if code in (0, 1) and first is not None:
            # Between the two nights an operator cancels the stalled tasks, and a day
            # passes: the second run finds those resolved and newly stalled ones.
            print(f"\n$ fleetaudit cancel {first} --finding stalled_task --apply")
            cancel = [*_FLEETAUDIT, "cancel", str(first), "--finding", "stalled_task"]
            subprocess.call([*cancel, "--endpoint", endpoint, "--apply"], env=env)
            tomorrow = _now_of(first) + 86_400
            code = _audit(args.out, endpoint, env, "the next night", now=tomorrow)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    latest = _latest(args.out)
    if latest is not None:
        print(f"\nThe newest run: {latest}")
        if first is not None and first != latest:
            print(f"\n$ fleetaudit diff {first} {latest} --show 5")
            subprocess.call([*_FLEETAUDIT, "diff", str(first), str(latest), "--show", "5"])
        print(f"\n$ fleetaudit history {args.out}")
        subprocess.call([*_FLEETAUDIT, "history", str(args.out)])
        glob = f"{args.out}/run_date=*/run_id=*/findings.parquet"
        query = (
            f"SELECT finding_type, severity, count(*) AS n FROM '{glob}' "
            "GROUP BY ALL ORDER BY n DESC"
        )
        print("\nQuery the findings with DuckDB (make installed it in .venv):")
        print(f'  .venv/bin/python -c "import duckdb; duckdb.sql(\\"{query}\\").show()"')
    print(f"fleetaudit run exited with {code}")
    if latest is not None and (latest / "report.html").is_file():
        print(f"The report: {(latest / 'report.html').resolve()} (open it in a browser)")
    return code


_FLEETAUDIT = [sys.executable, "-m", "fleetaudit"]


def _audit(
    out: Path, endpoint: str, env: dict[str, str], night: str, now: int | None = None
) -> int:
    """One `fleetaudit run` of the demo job against the emulator; its exit code."""
    audit = [*_FLEETAUDIT, "run", str(DEMO_JOB), "--endpoint", endpoint, "--out", str(out)]
    shown = f"$ fleetaudit run {DEMO_JOB.relative_to(ROOT)} --endpoint ... --out {out}"
    if now is not None:
        stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        audit += ["--now", stamp]
        shown += f" --now {stamp}"
    print(f"\n# {night}\n{shown}")
    return subprocess.call(audit, env=env)


def _latest(out: Path) -> Path | None:
    latest = out / "LATEST"
    return out / latest.read_text().strip() if latest.is_file() else None


def _now_of(run_dir: Path) -> int:
    """The clock a run used for task ages (epoch seconds)."""
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return int(manifest["config"]["now"]) // 1000


if __name__ == "__main__":
    sys.exit(main())
