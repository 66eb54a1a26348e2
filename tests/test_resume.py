"""Resume after SIGKILL: real `fleetaudit run` subprocesses killed at points the run reaches.

Each kill is triggered by the run's own progress (journal lines written, or requests the
emulator served), polled from this process, never by sleeping a guessed time. The emulator
runs in this process so its counters add up across every session of a run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from aiohttp import web
from hostile import hostile_url, throttled

from fleetaudit import cli
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.synthetic import SyntheticFleet
from fleetaudit.report.schema import TABLES
from fleetaudit.report.staging import STAGING_DIR, RunStaging

from helpers import UNLIMITED, emulator_url, set_env_credentials, write_device_list

KEY_ID = "resume-key"
SECRET = "resume-Secret-0c41d2"
NOW_ISO = "2024-11-19T09:47:43Z"
SIZE = 400
COMMIT_EVERY = 20
CONCURRENCY = 8
QPS = "150"
TASKS_ACTION = "ListOTAUnfinishedTaskByDevice"
RUN_GLOB = "run_date=*/run_id=*"
POLL_S = 0.002
DEADLINE_S = 30.0


def run_argv(url: str, devices: Path, out: Path, *extra: str) -> list[str]:
    # Small commit batches, so that kills land between and during commits.
    job = out.parent / "resume-job.toml"
    job.write_text(f"commit_every = {COMMIT_EVERY}\n", encoding="utf-8")
    return [
        "run",
        str(job),
        "--endpoint",
        url,
        "--devices",
        str(devices),
        "--out",
        str(out),
        "--now",
        NOW_ISO,
        "--qps",
        QPS,
        "--concurrency",
        str(CONCURRENCY),
        *extra,
    ]


def start_run(argv: list[str]) -> subprocess.Popen[bytes]:
    """`fleetaudit run ARGV` in a child process with the test credentials in its environment."""
    env = dict(os.environ, FLEETAUDIT_ACCESS_KEY_ID=KEY_ID, FLEETAUDIT_ACCESS_KEY_SECRET=SECRET)
    return subprocess.Popen(
        [sys.executable, "-m", "fleetaudit", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def journal_lines(out: Path) -> int:
    """Commit lines in the journals of every staged run under OUT (0 before any exists)."""
    total = 0
    for journal in (out / STAGING_DIR).glob("*/journal.jsonl"):
        try:
            total += journal.read_bytes().count(b"\n")
        except FileNotFoundError:
            continue  # finalize removed it between the glob and the read
    return total


def set_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test key in the environment, for runs started in this process."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)


def committed_devices(out: Path) -> int:
    """Devices rows named by the journals' commit lines under OUT."""
    return sum(
        orjson.loads(line)["rows"].get("devices", 0)
        for journal in (out / STAGING_DIR).glob("*/journal.jsonl")
        for line in journal.read_bytes().splitlines()
    )


def tasks_served(app: web.Application) -> int:
    return int(app[STATS_KEY].served[TASKS_ACTION])


def signal_when(child: subprocess.Popen[bytes], reached: Callable[[], bool], sig: int) -> None:
    """Send `sig` to `child` as soon as `reached()` holds (polled); fails if it ends first."""
    deadline = time.monotonic() + DEADLINE_S
    while not reached():
        if child.poll() is not None:
            pytest.fail(f"the run ended before the kill point: {stderr_of(child)}")
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(POLL_S)  # a poll interval, not a synchronization
    child.send_signal(sig)


def kill_when(child: subprocess.Popen[bytes], reached: Callable[[], bool]) -> None:
    """SIGKILL `child` as soon as `reached()` holds (polled); fails if it ends first."""
    with reaped(child):
        signal_when(child, reached, signal.SIGKILL)
        assert child.wait(timeout=DEADLINE_S) == -signal.SIGKILL


def finish(child: subprocess.Popen[bytes]) -> None:
    """Wait for `child` to end on its own; fails unless it exits 0."""
    with reaped(child):
        _, err = child.communicate(timeout=DEADLINE_S * 2)
        assert child.returncode == 0, err.decode("utf-8", errors="replace")


@contextmanager
def reaped(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """Whatever happens in the body, `child` is not left running and its pipe is closed."""
    try:
        yield
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=DEADLINE_S)
        if child.stderr is not None:
            child.stderr.close()


def stderr_of(child: subprocess.Popen[bytes]) -> str:
    assert child.stderr is not None
    return child.stderr.read().decode("utf-8", errors="replace")


def read_run(out: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table of the one complete run under OUT, as sorted lists of row tuples."""
    runs = list(out.glob(RUN_GLOB))
    assert len(runs) == 1, runs
    tables = {}
    for table in TABLES:
        rows = pq.read_table(runs[0] / f"{table}.parquet").to_pylist()
        tables[table] = sorted((tuple(row.values()) for row in rows), key=repr)
    return tables


@pytest.fixture(scope="module")
def fleet() -> SyntheticFleet:
    return SyntheticFleet(SIZE, seed=11)


@pytest.fixture(scope="module")
def uninterrupted(
    fleet: SyntheticFleet, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, list[tuple[object, ...]]], int]:
    """The same fleet audited by one run nobody killed: its tables and its task calls."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    devices = write_device_list(tmp / "devices.csv", fleet)
    out = tmp / "out"
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        finish(start_run(run_argv(url, devices, out)))
        calls = tasks_served(app)
    return read_run(out), calls


KillPoint = Callable[[Path, web.Application], Callable[[], bool]]


def after_commits(n: int) -> KillPoint:
    """Kill once the journals hold `n` commit lines in all (counted across sessions)."""
    return lambda out, app: lambda: journal_lines(out) >= n


def after_task_calls(n: int) -> KillPoint:
    """Kill once the emulator has answered `n` task listings (across sessions)."""
    return lambda out, app: lambda: tasks_served(app) >= n


def uncommitted_parts(out: Path) -> int:
    """Part files on disk that no journal line names yet: a commit is under way."""
    count = 0
    for run in (out / STAGING_DIR).glob("*"):
        try:
            named = {
                name
                # Only whole lines: the one being appended has no newline yet.
                for line in (run / "journal.jsonl").read_bytes().split(b"\n")[:-1]
                for name in orjson.loads(line)["parts"].values()
            }
            count += len({p.name for p in (run / "parts").iterdir()} - named)
        except FileNotFoundError:
            continue  # finalize removed it meanwhile
    return count


def inside_a_commit(n: int) -> KillPoint:
    """Kill inside a commit (parts written, journal line not yet) once `n` lines are in.

    Should the polls miss every commit's window for a few commits, kill after them anyway:
    a missed window must not make the test fail.
    """
    return lambda out, app: (
        lambda: (
            journal_lines(out) >= n and (uncommitted_parts(out) > 0 or journal_lines(out) >= n + 4)
        )
    )


# Kill points spread over the run: early, middle and late; by commits (which lands kills
# right after a journal append) and by served requests (which lands them anywhere,
# also inside a commit).
SCENARIOS = {
    "commits": [after_commits(2), after_commits(7), after_commits(13)],
    "requests": [after_task_calls(37), after_task_calls(161), after_task_calls(290)],
    "mixed": [after_task_calls(5), inside_a_commit(4), after_commits(13)],
}


@pytest.fixture(params=sorted(SCENARIOS))
def kill_points(request: pytest.FixtureRequest) -> list[KillPoint]:
    return SCENARIOS[request.param]


def test_killed_runs_resume_to_the_uninterrupted_result(
    tmp_path: Path,
    fleet: SyntheticFleet,
    uninterrupted: tuple[dict[str, list[tuple[object, ...]]], int],
    kill_points: list[KillPoint],
) -> None:
    """Runs killed with SIGKILL and resumed publish exactly what one unkilled run publishes."""
    expected, expected_calls = uninterrupted
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    out = tmp_path / "out"
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        argv = run_argv(url, devices, out)
        for kill_point in kill_points:
            kill_when(start_run(argv), kill_point(out, app))
            argv = run_argv(url, devices, out, "--resume")
            assert list(out.glob(RUN_GLOB)) == []
            assert not (out / "LATEST").exists()
        assert journal_lines(out) > 0
        finish(start_run(argv))
        calls = tasks_served(app)
    tables = read_run(out)
    assert tables == expected
    keys = [row[:2] for row in tables["devices"]]
    assert len(keys) == len(set(keys)) == SIZE
    assert tables["errors"] == []
    # Committed devices are never fetched again; only the uncommitted ones of each kill are.
    redone_at_most = COMMIT_EVERY + 2 * CONCURRENCY
    assert expected_calls <= calls <= expected_calls + len(kill_points) * redone_at_most
    assert list((out / STAGING_DIR).iterdir()) == []


# ---------------------------------------------------------------------------- stale staging


def staged_run_ids(out: Path) -> set[str]:
    root = out / STAGING_DIR
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def abandon_a_run(out: Path, url: str, devices: Path) -> str:
    """A run killed after its first commit; returns its run id."""
    kill_when(start_run(run_argv(url, devices, out)), lambda: journal_lines(out) >= 1)
    (run_id,) = staged_run_ids(out)
    return run_id


def age(path: Path, seconds: float) -> None:
    """Make a staged run look untouched for `seconds` (its dir, meta and journal)."""
    when = time.time() - seconds
    for p in (path, path / "meta.json", path / "journal.jsonl"):
        os.utime(p, (when, when))


@pytest.mark.parametrize(("days", "kept"), [(8, False), (6, True)])
def test_new_run_removes_only_week_old_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, days: int, kept: bool
) -> None:
    """Without --resume a new run starts; an abandoned run older than a week is removed."""
    fleet = SyntheticFleet(120, seed=3)
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    out = tmp_path / "out"
    set_credentials(monkeypatch)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        abandoned = abandon_a_run(out, url, devices)
        age(out / STAGING_DIR / abandoned, days * 86400)
        served_before = tasks_served(app)
        assert cli.main(run_argv(url, devices, out)) == 0
        served = tasks_served(app) - served_before
    runs = list(out.glob(RUN_GLOB))
    assert len(runs) == 1
    assert runs[0].name != f"run_id={abandoned}"  # a new run, not the abandoned one resumed
    assert served == 120
    assert staged_run_ids(out) == ({abandoned} if kept else set())


# ---------------------------------------------------------------------------- end of a run


def test_crash_between_last_commit_and_publish_adds_no_duplicates(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fleet: SyntheticFleet,
    uninterrupted: tuple[dict[str, list[tuple[object, ...]]], int],
) -> None:
    """A run that dies after committing its majority findings resumes without repeating them."""
    expected, _ = uninterrupted
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    out = tmp_path / "out"
    set_credentials(monkeypatch)
    # A file where the run's date partition must go makes publishing fail after the last
    # commit: a real I/O failure at the one point a kill is too unlikely to land on.
    out.mkdir()
    blocker = out / f"run_date={time.strftime('%Y-%m-%d', time.gmtime())}"
    blocker.write_bytes(b"")
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, _):
        assert cli.main(run_argv(url, devices, out)) == 4  # an I/O error: resumable
        blocker.unlink()
        assert cli.main(run_argv(url, devices, out, "--resume")) == 0
    assert read_run(out) == expected


def test_resume_after_a_kill_between_publish_and_tidy_up_audits_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fleet: SyntheticFleet
) -> None:
    """A run killed after its rename into place is complete: --resume calls nothing more."""
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    out = tmp_path / "out"
    set_credentials(monkeypatch)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        assert cli.main(run_argv(url, devices, out)) == 0
        (run_dir,) = out.glob(RUN_GLOB)
        run_id = run_dir.name.removeprefix("run_id=")
        # The state a kill leaves between the rename and the tidy-up: the staged run is
        # still there and LATEST is not written yet.
        inputs = orjson.loads((run_dir / "manifest.json").read_bytes())["inputs"]
        RunStaging.create(out, run_id, {"now_ms": 0, "inputs": inputs})
        (out / "LATEST").unlink()
        served_before = tasks_served(app)
        assert cli.main(run_argv(url, devices, out, "--resume")) == 0
        assert tasks_served(app) == served_before
    assert list(out.glob(RUN_GLOB)) == [run_dir]
    assert (out / "LATEST").read_text().strip() == str(run_dir.relative_to(out))
    assert staged_run_ids(out) == set()


def test_sigterm_commits_what_finished_and_exits_4(
    tmp_path: Path,
    fleet: SyntheticFleet,
    uninterrupted: tuple[dict[str, list[tuple[object, ...]]], int],
) -> None:
    """SIGTERM (systemd stopping the unit) saves finished devices, exits 4, and resumes."""
    expected, _ = uninterrupted
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    out = tmp_path / "out"
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        child = start_run(run_argv(url, devices, out))
        with reaped(child):
            signal_when(child, lambda: journal_lines(out) >= 2, signal.SIGTERM)
            _, err = child.communicate(timeout=DEADLINE_S)
        assert child.returncode == 4
        assert "--resume" in err.decode()
        assert not list(out.glob(RUN_GLOB))
        committed = committed_devices(out)
        assert committed > 0
        served_before = tasks_served(app)
        finish(start_run(run_argv(url, devices, out, "--resume")))
        refetched = tasks_served(app) - served_before
    assert read_run(out) == expected
    # Devices committed before SIGTERM, the last batch included, are not fetched again.
    assert refetched == SIZE - committed


# ---------------------------------------------------------------------------- commit cadence


def test_default_commits_keep_a_killed_run_within_a_second(tmp_path: Path) -> None:
    """With the default settings a run commits about every second, not every 10 s: a run
    killed mid-way has kept what finished, and its resume fetches only the rest.

    Paced at 25 calls/s the run takes several seconds; it must commit at least twice
    while it runs (it used to commit only every 10 s or 1000 devices, so never here).
    """
    size = 150
    fleet = SyntheticFleet(size, seed=5)
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    out = tmp_path / "out"
    argv = ["run", "--endpoint", "", "--devices", str(devices), "--out", str(out),
            "--now", NOW_ISO, "--qps", "25"]  # fmt: skip
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        argv[2] = url
        kill_when(start_run(argv), lambda: journal_lines(out) >= 2)
        committed = committed_devices(out)
        assert 0 < committed < size
        served_before = tasks_served(app)
        finish(start_run([*argv, "--resume"]))
        resumed_calls = tasks_served(app) - served_before
    assert resumed_calls == size - committed
    assert len(read_run(out)["devices"]) == size


# ---------------------------------------------------------------------------- other inputs


def run_and_abandon(out: Path, url: str, argv: list[str]) -> str:
    """Start a run, SIGKILL it after its first commit; returns its run id."""
    kill_when(start_run(argv), lambda: journal_lines(out) >= 1)
    (run_id,) = staged_run_ids(out)
    return run_id


@pytest.mark.parametrize("change", ["device list", "policy", "now"])
def test_resume_never_mixes_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    """`--resume` after the device list, the policy or a result-changing setting changed sets
    the staged run aside, says so, and audits today's inputs afresh (exit 0, for cron)."""
    fleet = SyntheticFleet(200, seed=7)
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    policy = tmp_path / "policy.toml"
    policy.write_text("", encoding="utf-8")
    out = tmp_path / "out"
    set_credentials(monkeypatch)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        argv = run_argv(url, devices, out, "--policy", str(policy))
        abandoned = run_and_abandon(out, url, argv)
        if change == "device list":
            lines = devices.read_text(encoding="utf-8").splitlines()
            devices.write_text("\n".join(lines[:51]) + "\n", encoding="utf-8")  # 50 devices
        elif change == "policy":
            policy.write_text('[stalled_after]\nQUEUED = "1h"\n', encoding="utf-8")
        else:
            argv = [*argv[: argv.index("--now") + 1], "2024-11-20T00:00:00Z",
                    *argv[argv.index("--now") + 2 :]]  # fmt: skip
        served_before = tasks_served(app)
        assert cli.main([*argv, "--resume"]) == 0
        served = tasks_served(app) - served_before
    expected_devices = 50 if change == "device list" else 200
    assert served == expected_devices  # all of today's devices, none taken from the old run
    (run_dir,) = out.glob(RUN_GLOB)
    assert run_dir.name != f"run_id={abandoned}"
    assert len(pq.read_table(run_dir / "devices.parquet")) == expected_devices
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["set_aside"] == [abandoned]
    assert staged_run_ids(out) == {abandoned + ".set-aside"}
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert abandoned in warning
    assert change in warning
    assert "new run" in warning


def test_resume_continues_the_same_inputs_from_another_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device list counts by content: the same export under another name resumes."""
    fleet = SyntheticFleet(200, seed=7)
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    out = tmp_path / "out"
    set_credentials(monkeypatch)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        abandoned = run_and_abandon(out, url, run_argv(url, devices, out))
        committed = committed_devices(out)
        moved = devices.rename(tmp_path / "devices-copy.csv")
        served_before = tasks_served(app)
        assert cli.main(run_argv(url, moved, out, "--resume")) == 0
        served = tasks_served(app) - served_before
    assert served == 200 - committed
    (run_dir,) = out.glob(RUN_GLOB)
    assert run_dir.name == f"run_id={abandoned}"
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["sessions"] == 2
    assert manifest["set_aside"] == []


def test_sigterm_during_the_firmware_lookup_exits_4_with_the_message(tmp_path: Path) -> None:
    """SIGTERM while the policy's firmware is being looked up is heard: exit 4 and the
    audit phase's message, not a silent 143 (the lookup ran outside the signal handling)."""
    asked = threading.Event()
    release = threading.Event()

    async def hold_firmware(params: dict[str, str]) -> web.Response:
        asked.set()
        # Held until the test is done, in a thread so the server's loop keeps serving.
        await asyncio.get_running_loop().run_in_executor(None, release.wait, DEADLINE_S)
        return throttled()

    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[targets]]\nproduct_key = "p"\nmodule = "default"\nfirmware_id = "167"\n',
        encoding="utf-8",
    )
    devices = tmp_path / "devices.csv"
    devices.write_text("product_key,device_name\np,d1\n", encoding="utf-8")
    out = tmp_path / "out"
    with hostile_url(hold_firmware) as (url, seen):
        try:
            child = start_run(run_argv(url, devices, out, "--policy", str(policy)))
            with reaped(child):
                assert asked.wait(DEADLINE_S), stderr_of(child)
                child.send_signal(signal.SIGTERM)
                _, err = child.communicate(timeout=DEADLINE_S)
        finally:
            release.set()
    assert child.returncode == 4, err.decode()
    assert "interrupted" in err.decode()
    assert [params["Action"] for params in seen] == ["QueryOTAFirmware"]


def test_a_killed_sweep_run_resumes_to_the_uninterrupted_result(
    tmp_path: Path, fleet: SyntheticFleet
) -> None:
    """A run reading tasks from the jobs, killed and resumed, publishes what one unkilled run
    does: the sweep runs again, and its firmware and jobs are not written twice."""
    devices = write_device_list(tmp_path / "devices.csv", fleet)
    sweep = ("--tasks-from", "jobs", "--qps", "400")
    once, out = tmp_path / "once", tmp_path / "out"
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, app):
        finish(start_run(run_argv(url, devices, once, *sweep)))
        kill_when(start_run(run_argv(url, devices, out, *sweep)), after_commits(5)(out, app))
        finish(start_run(run_argv(url, devices, out, *sweep, "--resume")))
    tables = read_run(out)
    assert tables == read_run(once)
    assert len(tables["firmware"]) == len({row[0] for row in tables["firmware"]})
    assert tables["tasks"]
