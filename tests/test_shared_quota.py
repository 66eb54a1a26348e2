"""One quota per account: real fleetaudit processes sharing a schedule (a locked file, Redis)
against the emulator, stores that fail, and a killed process that leaks nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web

from fleetaudit import cli
from fleetaudit.api.schedule import SCHEDULE_FILE, FileSchedule
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.synthetic import SyntheticFleet

from helpers import (
    TEST_KEY_ID,
    TEST_SECRET,
    emulator_url,
    metric_key,
    metric_samples,
    set_env_credentials,
    write_device_list,
)

pytestmark = pytest.mark.slow

# The emulator's quota per action, and what every run is told: 100 devices take 5 s, so runs
# started together overlap by seconds even when a loaded machine starts them a second apart.
QPS = 20.0
DEVICES = 100
PER_DEVICE = ("ListOTAModuleVersionsByDevice", "ListOTAUnfinishedTaskByDevice")
NOW_ISO = "2024-11-19T09:47:43Z"
REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed (apt-get install redis-server; CI installs it)",
)


@pytest.fixture(scope="module")
def fleet() -> SyntheticFleet:
    return SyntheticFleet(DEVICES, seed=12)


@pytest.fixture
def emulator(fleet: SyntheticFleet) -> Iterator[tuple[str, web.Application]]:
    """An emulator whose every action allows QPS calls/s to the test key."""
    quotas = dict.fromkeys((*PER_DEVICE, "QueryOTAFirmware", "ListOTAJobByDevice"), QPS)
    with emulator_url(fleet, quotas=quotas) as served:
        yield served


def throttled_answers(app: web.Application) -> int:
    return sum(app[STATS_KEY].throttled.values())


def run_argv(url: str, devices: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "fleetaudit", "run", "--endpoint", url, "--devices", str(devices),
        "--out", str(out), "--now", NOW_ISO, "--qps", str(QPS), "--concurrency", "16", *extra,
    ]  # fmt: skip


def run_together(
    argvs: list[list[str]],
    state_dirs: list[Path] | None = None,
    keys: list[tuple[str, str]] | None = None,
) -> list[str]:
    """Start every run at once, wait for all; each one's stderr (every exit code must be 0).

    `state_dirs` gives each run its own state directory, as if each ran on its own host;
    `keys` each its own access key (key id, secret), as RAM users of one account have.
    """
    envs = [dict(os.environ) for _ in argvs]
    for index, env in enumerate(envs):
        key_id, secret = keys[index] if keys else (TEST_KEY_ID, TEST_SECRET)
        env.update(FLEETAUDIT_ACCESS_KEY_ID=key_id, FLEETAUDIT_ACCESS_KEY_SECRET=secret)
        if state_dirs:
            env["XDG_STATE_HOME"] = str(state_dirs[index])
    children = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for argv, env in zip(argvs, envs, strict=True)
    ]
    errors = []
    for child in children:
        _, stderr = child.communicate(timeout=120)
        errors.append(stderr.decode())
        assert child.returncode == 0, stderr.decode()
    return errors


def manifest_of(out: Path) -> dict[str, Any]:
    (run,) = out.glob("run_date=*/run_id=*")
    manifest: dict[str, Any] = orjson.loads((run / "manifest.json").read_bytes())
    return manifest


@pytest.fixture
def devices(tmp_path: Path, fleet: SyntheticFleet) -> Path:
    return write_device_list(tmp_path / "devices.csv", fleet)


@pytest.mark.parametrize("processes", [2, 3])
def test_runs_on_one_host_share_the_quota_without_throttling(
    emulator: tuple[str, web.Application], devices: Path, tmp_path: Path, processes: int
) -> None:
    """Several runs at once book on the state directory's schedule: none is throttled."""
    url, app = emulator
    outs = [tmp_path / f"out{i}" for i in range(processes)]
    run_together([run_argv(url, devices, out) for out in outs])
    assert throttled_answers(app) == 0
    manifests = [manifest_of(out) for out in outs]
    store = str(Path(os.environ["XDG_STATE_HOME"]) / "fleetaudit" / SCHEDULE_FILE)
    for manifest in manifests:
        assert manifest["quota"] == {
            "store": store,
            "account": manifest["quota"]["account"],
            "share": 1,
            "degraded": None,
        }
        assert all(manifest["api"][action]["throttled"] == 0 for action in PER_DEVICE)
    # They did overlap, and the schedule made them wait for each other.
    waited = sum(m["api"][action]["quota_wait_s"] for m in manifests for action in PER_DEVICE)
    assert waited > 1.0


def test_without_a_shared_store_runs_at_once_are_throttled(
    emulator: tuple[str, web.Application], devices: Path, tmp_path: Path
) -> None:
    """The control: two runs pacing alone (quota_store off) overrun the account's quota."""
    url, app = emulator
    outs = [tmp_path / "a", tmp_path / "b"]
    run_together([run_argv(url, devices, out, "--quota-store", "off") for out in outs])
    assert throttled_answers(app) > 0
    assert manifest_of(outs[0])["quota"]["store"] == "off"


@pytest.mark.parametrize("same_account", [True, False])
def test_ram_users_of_one_account_share_by_naming_it(
    fleet: SyntheticFleet, devices: Path, tmp_path: Path, same_account: bool
) -> None:
    """Two RAM users (two key ids) share the quota when both set `account`; else throttled."""
    keys = [("ram-user-1", "ram-secret-1"), ("ram-user-2", "ram-secret-2")]
    quotas = dict.fromkeys((*PER_DEVICE, "QueryOTAFirmware", "ListOTAJobByDevice"), QPS)
    accounts = {key_id: "acme" for key_id, _ in keys}
    with emulator_url(fleet, credentials=dict(keys), quotas=quotas, accounts=accounts) as (
        url,
        app,
    ):
        named = ("--account", "acme") if same_account else ()
        outs = [tmp_path / "ram1", tmp_path / "ram2"]
        run_together([run_argv(url, devices, out, *named) for out in outs], keys=keys)
    if same_account:
        assert throttled_answers(app) == 0
        assert {manifest_of(out)["quota"]["account"] for out in outs} == {"acme"}
    else:  # each key id is an account of its own to fleetaudit: two schedules, one quota
        assert throttled_answers(app) > 0


def test_a_larger_share_waits_less_for_the_other(
    emulator: tuple[str, web.Application], devices: Path, tmp_path: Path
) -> None:
    """A gate with quota_share 4 beside a nightly with 1 waits far less for the other."""
    url, app = emulator
    gate, nightly = tmp_path / "gate", tmp_path / "nightly"
    run_together(
        [run_argv(url, devices, gate, "--quota-share", "4"), run_argv(url, devices, nightly)]
    )
    assert throttled_answers(app) == 0
    waits = {
        out.name: sum(manifest_of(out)["api"][a]["quota_wait_s"] for a in PER_DEVICE)
        for out in (gate, nightly)
    }
    assert waits["gate"] < waits["nightly"] / 2
    assert manifest_of(gate)["quota"]["share"] == 4


def test_metrics_file_has_the_share_and_the_wait(
    emulator: tuple[str, web.Application],
    devices: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Prometheus textfile gives, per action, the quota share, the shared wait, throttles."""
    url, _ = emulator
    set_env_credentials(monkeypatch, TEST_KEY_ID, TEST_SECRET)
    metrics = tmp_path / "fleetaudit.prom"
    argv = run_argv(url, devices, tmp_path / "out", "--metrics", str(metrics))[3:]
    assert cli.main(argv) == 0
    samples = metric_samples(metrics.read_text(encoding="utf-8"))
    for action in PER_DEVICE:
        share = samples[metric_key("fleetaudit_api_quota_share", action=action)]
        assert 0.8 <= share <= 1.0  # alone, it used nearly the whole quota
        # Alone it waited on nobody: at most timer and thread-hop noise (~0.2 ms a call).
        assert samples[metric_key("fleetaudit_api_quota_wait_seconds", action=action)] < 0.1
        assert samples[metric_key("fleetaudit_api_throttled", action=action)] == 0.0


# --- Redis ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port, with a password, gone after the test."""
    assert REDIS_SERVER is not None
    import redis

    port = free_port()
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", "s3cret-pw", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:  # the server needs a moment to listen: poll it, bounded
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
        client.close()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@needs_redis
def test_runs_on_three_hosts_share_the_quota_through_redis(
    emulator: tuple[str, web.Application], devices: Path, tmp_path: Path, redis_url: str
) -> None:
    """Three runs with separate state directories (three hosts) share Redis's schedule."""
    url, app = emulator
    outs = [tmp_path / f"host{i}" for i in range(3)]
    errors = run_together(
        [run_argv(url, devices, out, "--quota-store", redis_url) for out in outs],
        state_dirs=[out / "state" for out in outs],
    )
    assert throttled_answers(app) == 0
    for out, stderr in zip(outs, errors, strict=True):
        manifest = manifest_of(out)
        assert manifest["quota"]["degraded"] is None
        assert manifest["quota"]["store"].startswith("redis://:***@127.0.0.1:")
        assert "s3cret-pw" not in orjson.dumps(manifest).decode() + stderr
    waited = sum(manifest_of(o)["api"][a]["quota_wait_s"] for o in outs for a in PER_DEVICE)
    assert waited > 1.0


# --- stores that fail ---------------------------------------------------------------------


class SilentServer:
    """A TCP server that accepts connections and never answers (a hung Redis)."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._socket.close()
        for connection in self._held:
            connection.close()


def broken_store(kind: str, tmp_path: Path, stack: list[SilentServer]) -> str:
    if kind == "corrupt":
        directory = tmp_path / "state"
        directory.mkdir()
        (directory / SCHEDULE_FILE).write_bytes(b"this is not a quota schedule" * 100)
        return str(directory)
    if kind == "unwritable":
        blocker = tmp_path / "a-file"
        blocker.write_text("a file, not a directory", encoding="utf-8")
        return str(blocker / "state")
    if kind == "redis-down":
        return f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    server = SilentServer()
    stack.append(server)
    return f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("kind", ["corrupt", "unwritable", "redis-down", "redis-hangs"])
def test_a_failing_store_degrades_to_pacing_alone_with_one_warning(
    emulator: tuple[str, web.Application],
    devices: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    """A corrupt, unwritable, unreachable or hung store: the run completes, warned once."""
    url, _ = emulator
    set_env_credentials(monkeypatch, TEST_KEY_ID, TEST_SECRET)
    servers: list[SilentServer] = []
    store = broken_store(kind, tmp_path, servers)
    try:
        argv = run_argv(url, devices, tmp_path / "out", "--quota-store", store)[3:]
        assert cli.main(argv) == 0
    finally:
        for server in servers:
            server.close()
    warnings = [r.getMessage() for r in caplog.records if "quota store" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "pacing this process alone" in warnings[0]
    manifest = manifest_of(tmp_path / "out")
    assert manifest["quota"]["degraded"]
    assert manifest["counts"]["devices_total"] == DEVICES
    shown = orjson.dumps(manifest).decode() + caplog.text
    assert "s3cret-pw" not in shown


# --- a killed process ------------------------------------------------------------------------

_BOOKER = """
import sys, anyio
from pathlib import Path
from fleetaudit.api.schedule import FileSchedule

async def main():
    schedule = FileSchedule(Path(sys.argv[1]), "acct")
    for _ in range(4):
        await schedule.reserve("A", 7.5)
    print("booked", flush=True)
    await anyio.sleep_forever()

anyio.run(main)
"""


def test_a_killed_process_leaks_at_most_its_booked_slots(tmp_path: Path) -> None:
    """A process killed after booking 30 s of slots delays the next booking by at most that."""
    child = subprocess.Popen(
        [sys.executable, "-c", _BOOKER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "booked"
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()

    async def next_wait() -> float:
        schedule = FileSchedule(tmp_path, "acct")
        try:
            return await schedule.reserve("A", 7.5)
        finally:
            await schedule.aclose()

    wait = anyio.run(next_wait)
    assert 20.0 < wait <= 30.0


# --- cancel --apply on the run's schedule ------------------------------------------------


async def test_cancel_apply_books_on_the_schedule_the_run_used(tmp_path: Path) -> None:
    """An apply books its calls under the run's account in the run's quota store."""
    from cancel_helpers import audit_findings, cancel, emulator, make_fleet, make_run_dir

    store = tmp_path / "shared-quota"
    with emulator(make_fleet()) as (url, _):
        run = make_run_dir(tmp_path / "run", audit_findings(), url)
        manifest = orjson.loads((run / "manifest.json").read_bytes())
        manifest["config"].update(account="acme", quota_store=str(store))
        (run / "manifest.json").write_bytes(orjson.dumps(manifest))
        code, _ = await cancel(run, apply=True)
    assert code == 0
    # The file keeps only schedules still booked ahead: the apply's last calls (its re-check).
    booked = orjson.loads((store / SCHEDULE_FILE).read_bytes())
    assert booked
    assert all(key.startswith("acme/") for key in booked)


def test_a_schedule_booked_far_into_the_future_is_not_believed(tmp_path: Path) -> None:
    """A file whose next slot is an hour ahead (a clock stepped back, a hand edit) does not
    make the run wait an hour: the booking starts now."""
    tmp_path.joinpath(SCHEDULE_FILE).write_bytes(orjson.dumps({"acct/A": time.time() + 3600}))

    async def wait() -> float:
        schedule = FileSchedule(tmp_path, "acct")
        try:
            return await schedule.reserve("A", 0.1)
        finally:
            await schedule.aclose()

    assert anyio.run(wait) < 1.0


def test_a_lock_held_elsewhere_degrades_after_the_store_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A schedule file locked by a stopped process: the booking gives up and paces alone."""
    import fcntl

    from fleetaudit.api.schedule import FallbackSchedule

    holder = tmp_path / SCHEDULE_FILE
    with holder.open("a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)

        async def book_twice() -> tuple[float, str | None]:
            schedule = FallbackSchedule(FileSchedule(tmp_path, "acct"))
            try:
                await schedule.reserve("A", 0.1)
                return await schedule.reserve("A", 0.1), schedule.degraded
            finally:
                await schedule.aclose()

        wait, degraded = anyio.run(book_twice)
    assert degraded is not None
    assert "TimeoutError" in degraded
    assert 0.0 <= wait <= 0.11  # the local schedule's next slot
    assert sum("quota store" in r.getMessage() for r in caplog.records) == 1
