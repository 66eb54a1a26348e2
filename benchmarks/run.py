"""`make bench`: quota efficiency, the SDK side by side, engine overhead, memory, DuckDB.

Every client runs as its own process against the emulator in another process on
loopback; CPU time and peak RSS are the child's own (wait4), the emulator's CPU is read
from /proc. Each figure is the median of `--runs` runs; ratios are taken within a run
(same machine state) and their median reported. The default sizes finish in under 10
minutes on 2 cores; `--full` adds the large size (1M devices, about 10 minutes more).

    make bench                                  # default sizes: memory at 20k and 100k
    make bench BENCH_ARGS="--full"              # also 1M devices
    .venv/bin/python benchmarks/run.py --only sweep    # devices vs jobs, 100k devices
    .venv/bin/python benchmarks/run.py --only overhead --runs 5
    .venv/bin/python benchmarks/run.py --only report --plotly   # report.html, ~6 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BENCH_ENV, PYTHON, ROOT, ChildRun, emulator, env, run_child, write_devices
from shared_quota import shared_quota

SEED = 1
# "No quota": the highest rate the settings accept, far above what one client can send.
UNPACED = 10_000
PER_DEVICE = ("ListOTAModuleVersionsByDevice", "ListOTAUnfinishedTaskByDevice")
Row = tuple[str, str, str]  # (measure, value, goal)
EVERY_PART = (
    "quota", "sdk", "overhead", "memory", "emulator", "commit", "sweep", "sampled", "shared",
    "report",
)  # fmt: skip


def fleetaudit_run(
    url: str,
    devices: Path,
    out: Path,
    qps: float,
    *,
    uvloop: bool = False,
    extra: Sequence[str] = (),
) -> tuple[ChildRun, dict[str, Any]]:
    """One `fleetaudit run` as a child process; its measurements and its manifest."""
    shutil.rmtree(out, ignore_errors=True)
    entry = [PYTHON, str(ROOT / "benchmarks" / "uvloop_run.py")] if uvloop else [
        PYTHON, "-m", "fleetaudit"
    ]  # fmt: skip
    child = run_child(
        [*entry, "run", "--endpoint", url, "--devices", str(devices), "--out", str(out),
         "--qps", str(qps), "--log-format", "json", *extra]
    )  # fmt: skip
    run_dir = out / (out / "LATEST").read_text().strip()
    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    manifest["run_dir"] = str(run_dir)
    return child, manifest


def api_totals(manifest: dict[str, Any]) -> dict[str, int]:
    """Calls, attempts and throttled answers over every action of a run."""
    api = manifest["api"].values()
    return {
        key: sum(int(stats[key]) for stats in api) for key in ("calls", "attempts", "throttled")
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def quota_and_sdk(devices: int, runs: int, work: Path, skip_sdk: bool) -> list[Row]:
    """(1) fleetaudit against the quota floor and (2) the official SDK, same settings."""
    quota, latency, error_rate = 100.0, 0.15, 0.01
    fleet = write_devices(devices, SEED, work / f"devices-{devices}.csv")
    efficiency, throttled_share, fa_wall, fa_cpu_call = [], [], [], []
    sdk_wall, sdk_cpu_call, wall_ratio, cpu_ratio = [], [], [], []
    for index in range(runs):
        # A fresh emulator per client, so neither inherits the other's quota state.
        with emulator(devices, SEED, qps=quota, latency=latency, error_rate=error_rate) as emu:
            child, manifest = fleetaudit_run(emu.url, fleet, work / "quota-out", quota)
        per_action = max(int(manifest["api"][a]["attempts"]) for a in PER_DEVICE)
        floor = max(int(manifest["api"][a]["calls"]) for a in PER_DEVICE) / quota
        totals = api_totals(manifest)
        efficiency.append(floor / child.wall_s)
        throttled_share.append(totals["throttled"] / totals["attempts"])
        fa_wall.append(child.wall_s)
        fa_cpu_call.append(child.cpu_s / totals["attempts"])
        line = (
            f"  quota run {index + 1}: {child.wall_s:.1f} s, floor {floor:.1f} s "
            f"({per_action} attempts/action), throttled {totals['throttled']}"
        )
        if not skip_sdk:
            with emulator(devices, SEED, qps=quota, latency=latency, error_rate=error_rate) as emu:
                sdk = run_child(
                    [PYTHON, str(ROOT / "benchmarks" / "sdk_baseline.py"), "--endpoint", emu.url,
                     "--devices", str(fleet)]
                )  # fmt: skip
            counts = json.loads(sdk.stdout)
            sdk_wall.append(sdk.wall_s)
            sdk_cpu_call.append(sdk.cpu_s / counts["attempts"])
            wall_ratio.append(sdk.wall_s / child.wall_s)
            cpu_ratio.append(sdk_cpu_call[-1] / fa_cpu_call[-1])
            line += f"; SDK {sdk.wall_s:.1f} s, {counts['attempts']} attempts"
        print(line, flush=True)
    rows: list[Row] = [
        (f"1. quota: wall time, {devices} devices, 100/s, 150 ms, 1% 503",
         f"{median(fa_wall):.1f} s", ""),
        ("1. quota: share of the floor (calls/action / quota)",
         f"{100 * median(efficiency):.1f}%", ">= 95%"),
        ("1. quota: throttled attempts", f"{100 * median(throttled_share):.2f}%", "<= 1%"),
    ]  # fmt: skip
    if not skip_sdk:
        rows += [
            ("2. SDK 16 threads: wall time", f"{median(sdk_wall):.1f} s", ""),
            ("2. SDK / fleetaudit wall time", f"{median(wall_ratio):.2f}x", ">= 2x"),
            ("2. CPU per call: fleetaudit | SDK",
             f"{1e6 * median(fa_cpu_call):.0f} | {1e6 * median(sdk_cpu_call):.0f} us", ""),
            ("2. SDK / fleetaudit CPU per call", f"{median(cpu_ratio):.2f}x", ">= 4x"),
        ]  # fmt: skip
    return rows


def overhead(devices: int, runs: int, work: Path) -> list[Row]:
    """(3) Client CPU per call, whole pipeline vs a bare aiohttp loop, quota unlimited."""
    fleet = write_devices(devices, SEED, work / f"devices-{devices}.csv")
    results: dict[str, list[float]] = {}
    emulator_share: list[float] = []

    def bare(url: str, uvloop: bool) -> tuple[ChildRun, int]:
        extra = ["--uvloop"] if uvloop else []
        child = run_child(
            [PYTHON, str(ROOT / "benchmarks" / "bare_aiohttp.py"), "--endpoint", url,
             "--devices", str(fleet), *extra]
        )  # fmt: skip
        return child, int(json.loads(child.stdout)["attempts"])

    def engine(url: str, uvloop: bool) -> tuple[ChildRun, int]:
        child, manifest = fleetaudit_run(url, fleet, work / "overhead-out", UNPACED, uvloop=uvloop)
        return child, api_totals(manifest)["attempts"]

    variants: dict[str, Callable[[str], tuple[ChildRun, int]]] = {
        "bare": lambda url: bare(url, False),
        "fleetaudit": lambda url: engine(url, False),
        "bare+uvloop": lambda url: bare(url, True),
        "fleetaudit+uvloop": lambda url: engine(url, True),
    }
    with emulator(devices, SEED) as emu:
        for index in range(runs):
            for name, measure in variants.items():
                before = emu.cpu_s()
                child, attempts = measure(emu.url)
                emu_cpu = emu.cpu_s() - before
                results.setdefault(name, []).append(1e6 * child.cpu_s / attempts)
                results.setdefault(name + " wall", []).append(child.wall_s)
                if name == "fleetaudit":
                    emulator_share.append(emu_cpu / child.wall_s)
                print(
                    f"  overhead run {index + 1} {name}: {child.wall_s:.1f} s wall, "
                    f"{1e6 * child.cpu_s / attempts:.0f} us CPU/call ({attempts} calls), "
                    f"emulator {emu_cpu:.1f} s CPU",
                    flush=True,
                )
    ratio = [f / b for f, b in zip(results["fleetaudit"], results["bare"], strict=True)]
    ratio_uv = [f / b for f, b in zip(results["fleetaudit+uvloop"], results["bare"], strict=True)]
    return [
        (f"3. CPU/call, {devices} devices: bare aiohttp | fleetaudit",
         f"{median(results['bare']):.0f} | {median(results['fleetaudit']):.0f} us", ""),
        ("3. fleetaudit / bare aiohttp CPU per call", f"{median(ratio):.2f}x", "<= 2x"),
        ("3. uvloop: bare | fleetaudit CPU/call",
         f"{median(results['bare+uvloop']):.0f} | {median(results['fleetaudit+uvloop']):.0f} us",
         ""),
        ("3. fleetaudit+uvloop / bare aiohttp", f"{median(ratio_uv):.2f}x", ""),
        ("3. wall: bare | fleetaudit",
         f"{median(results['bare wall']):.1f} | {median(results['fleetaudit wall']):.1f} s", ""),
        ("3. emulator CPU busy during fleetaudit run", f"{100 * median(emulator_share):.0f}%",
         "< 100% (not the bottleneck)"),
    ]  # fmt: skip


def commit_cadence(devices: int, runs: int, work: Path) -> list[Row]:
    """(6) What a commit about every second costs, and what a crash loop loses with it."""
    fleet = write_devices(devices, SEED, work / f"devices-{devices}.csv")
    intervals = (10.0, 1.0, 0.25)
    wall: dict[float, list[float]] = {}
    cpu: dict[float, list[float]] = {}
    with emulator(devices, SEED) as emu:
        for index in range(runs):
            for interval in intervals:
                child, _ = fleetaudit_run(
                    emu.url, fleet, work / "commit-out", UNPACED,
                    extra=("--commit-interval", str(interval)),
                )  # fmt: skip
                wall.setdefault(interval, []).append(child.wall_s)
                cpu.setdefault(interval, []).append(child.cpu_s)
                print(
                    f"  commit run {index + 1} every {interval} s: {child.wall_s:.1f} s wall, "
                    f"{child.cpu_s:.1f} s CPU",
                    flush=True,
                )
    rows: list[Row] = [
        (f"6. {devices} devices unpaced, commit every {interval} s: wall | CPU",
         f"{median(wall[interval]):.1f} | {median(cpu[interval]):.1f} s", "")
        for interval in intervals
    ]  # fmt: skip
    rows.append(
        ("6. CPU, commit every 1 s / every 10 s", f"{median(cpu[1.0]) / median(cpu[10.0]):.2f}x",
         "")
    )  # fmt: skip
    for interval in (10.0, 1.0):
        refetched, size = crash_loop(work, interval)
        rows.append(
            (f"6. crash loop (5 SIGKILLs, 6 s apart, 10 calls/s), commit every {interval} s",
             f"{refetched} of {size} devices fetched again", "about 1 s of work per kill")
        )  # fmt: skip
    return rows


def crash_loop(work: Path, interval: float, size: int = 332) -> tuple[int, int]:
    """A run at 10 calls/s killed five times 6 s apart, then finished: devices fetched twice."""
    from fleetaudit.emulator.app import STATS_KEY, create_app
    from fleetaudit.emulator.server import serve_in_thread
    from fleetaudit.emulator.synthetic import SyntheticFleet

    fleet_file = write_devices(size, SEED, work / f"devices-{size}.csv")
    out = work / "crash-out"
    shutil.rmtree(out, ignore_errors=True)
    app = create_app(
        SyntheticFleet(size, seed=SEED),
        credentials={
            BENCH_ENV["FLEETAUDIT_ACCESS_KEY_ID"]: BENCH_ENV["FLEETAUDIT_ACCESS_KEY_SECRET"]
        },
    )
    with serve_in_thread(app) as url:
        argv = [PYTHON, "-m", "fleetaudit", "run", "--endpoint", url, "--devices",
                str(fleet_file), "--out", str(out), "--qps", "10", "--log-format", "json",
                "--commit-interval", str(interval)]  # fmt: skip
        for kill in range(6):
            proc = subprocess.Popen(
                [*argv, *(["--resume"] if kill else [])],
                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if kill == 5:
                proc.wait()
                break
            try:
                proc.wait(timeout=6.0)  # a benchmark's schedule, not a synchronization
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        served = int(app[STATS_KEY].served["ListOTAUnfinishedTaskByDevice"])
    return served - size, size


def memory(sizes: Sequence[int], runs: int, work: Path, duckdb_size: int | None) -> list[Row]:
    """(4) Peak RSS of `fleetaudit run` per fleet size, quota unlimited; (5) DuckDB on one."""
    peaks: dict[int, float] = {}
    rows: list[Row] = []
    for size in sizes:
        fleet = write_devices(size, SEED, work / f"devices-{size}.csv")
        rss, walls = [], []
        # The big sizes run once per size unless asked otherwise: each is minutes long.
        repeat = runs if size <= 20000 else 1
        with emulator(size, SEED) as emu:
            for index in range(repeat):
                child, manifest = fleetaudit_run(emu.url, fleet, work / f"mem-{size}", UNPACED)
                rss.append(child.max_rss_mb)
                walls.append(child.wall_s)
                print(
                    f"  memory {size} run {index + 1}: {child.max_rss_mb:.0f} MB peak RSS, "
                    f"{child.wall_s:.0f} s",
                    flush=True,
                )
        peaks[size] = median(rss)
        rows.append(
            (f"4. peak RSS, {size} devices ({repeat} run(s), {median(walls):.0f} s)",
             f"{peaks[size]:.0f} MB", "<= 300 MB" if size >= 1_000_000 else "")
        )  # fmt: skip
        if size == duckdb_size:
            rows.append(duckdb_count(Path(manifest["run_dir"]), size))
    small, large = sizes[0], sizes[1]
    rows.append(
        (f"4. RSS growth {small} -> {large} devices", f"{peaks[large] / peaks[small]:.2f}x",
         f"<= 1.25x for {large // small}x")
    )  # fmt: skip
    return rows


def duckdb_count(run_dir: Path, size: int) -> Row:
    """(5) DuckDB counting findings by type over a run's files, in a fresh process."""
    query = f"SELECT finding_type, count(*) FROM '{run_dir}/findings.parquet' GROUP BY ALL"
    script = (
        "import time, duckdb; t = time.perf_counter(); "
        f"duckdb.sql({query!r}).fetchall(); print(time.perf_counter() - t)"
    )
    times = [float(run_child([PYTHON, "-c", script]).stdout) for _ in range(3)]
    label = f"5. DuckDB: count findings by type, {size}-device run"
    return (label, f"{median(times) * 1000:.0f} ms", "")


def report(sizes: Sequence[int], work: Path, plotly: bool) -> list[Row]:
    """(6) report.html at each fleet size (the demo's seed and policy), on a second night of
    the series so that its changes are drawn too: size, write time, Chromium render time."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return [("6. report.html", "skipped (no chromium on PATH)", "")]
    rows: list[Row] = []
    policy = ROOT / "sample_inputs" / "demo-policy.toml"
    for size in sizes:
        fleet = write_devices(size, 7, work / f"devices-demo-{size}.csv")
        out = work / f"report-{size}"
        shutil.rmtree(out, ignore_errors=True)
        with emulator(size, 7) as emu:
            for night in ("2026-01-01T02:00:00Z", "2026-01-02T02:00:00Z"):
                run_child(
                    [PYTHON, "-m", "fleetaudit", "run", "--endpoint", emu.url, "--devices",
                     str(fleet), "--policy", str(policy), "--out", str(out), "--qps",
                     str(UNPACED), "--now", night, "--log-format", "json"]
                )  # fmt: skip
        script = [PYTHON, str(ROOT / "benchmarks" / "report_render.py"), str(out)]
        measured = json.loads(run_child([*script, *(["--plotly"] if plotly else [])]).stdout)
        print(f"  report {size}: {measured}", flush=True)
        kib, write_ms = measured["bytes"] / 1024, measured["write_s"] * 1000
        rows.append(
            (f"6. report.html, {size} devices: size / write / render",
             f"{kib:.0f} KiB / {write_ms:.0f} ms / {measured['render_ms']:.0f} ms", "")
        )  # fmt: skip
        if plotly:
            kib = measured["plotly_bytes"] / 1024
            rows.append(
                (f"6. same charts by Plotly (plotly.js inlined), {size} devices: size / render",
                 f"{kib:.0f} KiB / {measured['plotly_render_ms']:.0f} ms", "")
            )  # fmt: skip
    return rows


def emulator_rate(devices: int, work: Path) -> list[Row]:
    """The emulator's own request rate on one core (bare client pinned to the other)."""
    if not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return [("emulator rate on one core", "skipped (no taskset or one core)", "")]
    fleet = write_devices(devices, SEED, work / f"devices-{devices}.csv")
    rates, cpu_per_request = [], []
    with emulator(devices, SEED, cpu_list="0") as emu:
        for _ in range(3):
            before = emu.cpu_s()
            child = run_child(
                [PYTHON, str(ROOT / "benchmarks" / "bare_aiohttp.py"), "--endpoint", emu.url,
                 "--devices", str(fleet), "--uvloop"],
                cpu_list="1",
            )  # fmt: skip
            attempts = int(json.loads(child.stdout)["attempts"])
            inner_wall = float(json.loads(child.stdout)["wall_s"])
            rates.append(attempts / inner_wall)
            cpu_per_request.append((emu.cpu_s() - before) / attempts)
    return [
        ("emulator alone on one core: requests/s", f"{median(rates):.0f}/s", ""),
        ("emulator CPU per request", f"{1e6 * median(cpu_per_request):.0f} us", ""),
    ]


def sweep(devices: int, work: Path, quota: float) -> list[Row]:
    """(7) Reading tasks per device vs from the jobs' listings: calls per action, wall time.

    The emulator's quota is scaled up (every action at `quota` calls/s) so a 100k-device fleet
    fits in the bench; the calls, not the seconds, are what the goals judge.
    """
    fleet = write_devices(devices, SEED, work / f"devices-{devices}.csv")
    rows: list[Row] = []
    results: dict[str, dict[str, Any]] = {}
    for name, extra in (
        ("devices, full", ()),
        ("devices, tasks only", ("--audit", "tasks")),
        ("jobs, full", ("--tasks-from", "jobs")),
        ("jobs, tasks only", ("--tasks-from", "jobs", "--audit", "tasks")),
    ):
        with emulator(devices, SEED, qps=quota) as emu:
            child, manifest = fleetaudit_run(emu.url, fleet, work / "sweep-out", quota, extra=extra)
        calls = {a: int(s["calls"]) for a, s in manifest["api"].items() if int(s["calls"])}
        results[name] = {"calls": calls, "wall": child.wall_s, "manifest": manifest}
        shown = ", ".join(f"{a} {n}" for a, n in calls.items())
        print(f"  sweep {name}: {child.wall_s:.1f} s, {sum(calls.values())} calls ({shown})")
        rows.append(
            (f"7. {devices} devices, {name}: calls | wall",
             f"{sum(calls.values())} | {child.wall_s:.1f} s", "")
        )  # fmt: skip
        for action, count in calls.items():
            rows.append((f"7.   {name}: {action}", str(count), ""))
    tasks_only = results["jobs, tasks only"]
    record = tasks_only["manifest"]["tasks"]["sweep"]
    calls = tasks_only["calls"]
    floor = (
        calls.get("ListOTAFirmware", 0)
        + calls.get("ListOTAJobByFirmware", 0)
        + 4 * int(record["jobs"])
        + int(record["unfinished_tasks"]) / 100
    )
    full_per_device = sum(results["jobs, full"]["calls"].values()) / devices
    rows += [
        ("7. tasks-only by jobs / (fw pages + job pages + 4 per job + tasks/100)",
         f"{sum(calls.values()) / floor:.3f}x", "<= 1.05x"),
        ("7. full audit by jobs: calls per device", f"{full_per_device:.3f}", "<= 1.05"),
        ("7. calls, tasks only: devices / jobs",
         f"{sum(results['devices, tasks only']['calls'].values()) / sum(calls.values()):.0f}x",
         ""),
    ]  # fmt: skip
    return rows


def sampled_gate(devices: int, work: Path, quota: float, sample: int = 2000) -> list[Row]:
    """(8) A pre-rollout gate on one product: a sample of its devices vs all of them.

    Tasks come from the jobs' listings in both; only the module-version calls differ. The
    quota is scaled up as in (7); "at 10/s" is the module-version calls over the real quota.
    """
    fleet = write_devices(devices, SEED, work / f"devices-{devices}.csv")
    header, *lines = fleet.read_text().splitlines()
    product = lines[0].split(",", 1)[0]
    scoped = work / f"devices-{devices}-{product}.csv"
    ours = [line for line in lines if line.startswith(product + ",")]
    scoped.write_text("\n".join([header, *ours]) + "\n")
    job = work / "sampled-gate.toml"
    job.write_text(
        f'tasks_from = "jobs"\n[gate]\nproduct_key = "{product}"\nmax_drift_percent = 100\n'
    )
    rows: list[Row] = []
    for name, extra in (("full audit", ()), (f"sample of {sample}", ("--sample", str(sample)))):
        out = work / "sampled-out"
        shutil.rmtree(out, ignore_errors=True)
        with emulator(devices, SEED, qps=quota) as emu:
            child = run_child(
                [PYTHON, "-m", "fleetaudit", "run", str(job), "--endpoint", emu.url,
                 "--devices", str(scoped), "--out", str(out), "--qps", str(quota),
                 "--log-format", "json", *extra]
            )  # fmt: skip
        manifest = json.loads(
            (out / (out / "LATEST").read_text().strip() / "manifest.json").read_text()
        )
        calls = {a: int(s["calls"]) for a, s in manifest["api"].items() if int(s["calls"])}
        versions = calls.get("ListOTAModuleVersionsByDevice", 0)
        drift = manifest["gate"].get("sample", {}).get("drift", "")
        print(f"  sampled gate {name}: {child.wall_s:.1f} s, {sum(calls.values())} calls {drift}")
        rows.append(
            (f"8. gate on one product ({len(ours)} of {devices} devices), {name}: "
             "calls | wall | module versions at 10/s",
             f"{sum(calls.values())} | {child.wall_s:.1f} s | {versions / 10 / 60:.1f} min",
             f"drift {drift}" if drift else "")
        )  # fmt: skip
    return rows


def machine() -> list[str]:
    model = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in lscpu.splitlines()
             if line.startswith("Model name")), model
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pass
    return [
        f"cores (nproc): {os.cpu_count()}, CPU: {model}",
        f"Python {platform.python_version()} on {platform.system()} {platform.release()}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also 1M devices (memory)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--only",
        action="append",
        choices=EVERY_PART,
        help="run only these parts (repeatable); sdk implies quota",
    )
    parser.add_argument("--quota-devices", type=int, default=3000)
    parser.add_argument("--overhead-devices", type=int, default=10000)
    parser.add_argument("--sweep-devices", type=int, default=100_000)
    parser.add_argument("--sweep-quota", type=float, default=2000.0, help="calls/s per action")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument(
        "--plotly", action="store_true", help="report: also Plotly's page (pip install plotly)"
    )
    args = parser.parse_args(argv)
    parts = set(args.only or EVERY_PART)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[Row] = []
    for line in machine():
        print(line)
    if parts & {"quota", "sdk"}:
        rows += quota_and_sdk(args.quota_devices, args.runs, args.work, "sdk" not in parts)
    if "overhead" in parts:
        rows += overhead(args.overhead_devices, args.runs, args.work)
    if "memory" in parts:
        sizes = [20000, 100000, 1_000_000] if args.full else [20000, 100000]
        rows += memory(sizes, args.runs, args.work, duckdb_size=100000)
    if "emulator" in parts:
        rows += emulator_rate(args.overhead_devices, args.work)
    if "commit" in parts:
        rows += commit_cadence(args.overhead_devices, args.runs, args.work)
    if "sweep" in parts:
        rows += sweep(args.sweep_devices, args.work, args.sweep_quota)
    if "sampled" in parts:
        rows += sampled_gate(args.sweep_devices, args.work, args.sweep_quota)
    if "shared" in parts:
        # One run each (they take a minute of quota-bound wall time apiece); --full adds the
        # two runs without a shared store, as before issue 12.
        rows += shared_quota(args.work / "shared", baseline=args.full)
    if "report" in parts:
        rows += report([3000, 100000], args.work, args.plotly)
    print_table(rows, args.runs, time.perf_counter() - started)
    (args.work / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


def print_table(rows: Sequence[Row], runs: int, elapsed: float) -> None:
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    print(f"\nmedians of {runs} runs; {elapsed:.0f} s in all")
    print(f"| {'measure':<{width}} | {'value':>{value_width}} | goal")
    print(f"|{'-' * (width + 2)}|{'-' * (value_width + 2)}|------")
    for measure, value, goal in rows:
        print(f"| {measure:<{width}} | {value:>{value_width}} | {goal}")


if __name__ == "__main__":
    sys.exit(main())
