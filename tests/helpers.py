"""Shared test helpers: test credentials, a fake clock, and an emulator served on loopback.

Test modules import from here (`from helpers import FakeClock, emulator_url`); pytest puts
`tests/` on `sys.path` because it has no `__init__.py`. Fixtures live in `conftest.py`.

- `TEST_KEY_ID`/`TEST_SECRET`: the credentials the emulator accepts; `FIXED_NOW` the time;
- `FakeClock`: a callable returning float seconds, moved by `set()`/`advance()`, for
  `create_app(clock=...)` and anything else that takes a clock;
- `RecordingSleep`: an injected sleep that waits for nothing, records each wait and can
  move a `FakeClock`;
- `emulator_url(fleet, **create_app_kwargs)`: a context manager serving
  `create_app(fleet, credentials={TEST_KEY_ID: TEST_SECRET}, **kwargs)` in a thread and
  yielding `(base_url, app)`; read counters via `app[STATS_KEY]`, or `requests_seen(app)`;
- `signed_params(...)`: the common parameters plus `Signature` for one call, and
  `call_emulator(url, action, params, ...)` to send it, for tests without the real client;
- `static_fleet()`: a small hand-made fleet (see its docstring);
- `set_env_credentials(monkeypatch, ...)`: a key pair in `FLEETAUDIT_ACCESS_KEY_*`;
- `metric_samples(text)`: a Prometheus textfile read back by `prometheus_client`;
- `FleetBuilder`: hand-made fleets, one call per device, task, firmware or job;
- `write_device_list(path, fleet)`: the CSV an audit reads; `UNLIMITED` quotas;
- `lock_held_elsewhere(out)`: a child process holding the run lock on `out`.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from fleetaudit.api.client import ACTIONS
from fleetaudit.api.signing import sign
from fleetaudit.emulator.app import STATS_KEY, create_app
from fleetaudit.emulator.fleet import (
    Fleet,
    FleetDevice,
    FleetFirmware,
    FleetJob,
    FleetTask,
    StaticFleet,
)
from fleetaudit.emulator.server import serve_in_thread

TEST_KEY_ID = "testid"
TEST_SECRET = "testsecret"
# 2024-11-19T09:47:43Z, the NOTES.md vectors' timestamp.
FIXED_NOW = 1_732_009_663.0

# A quota of 0 is no limit: the emulator throttles none of the client's actions.
UNLIMITED = dict.fromkeys(ACTIONS, 0.0)


def set_env_credentials(
    monkeypatch: pytest.MonkeyPatch, key_id: str = TEST_KEY_ID, secret: str = TEST_SECRET
) -> None:
    """Put an access key pair in the environment, where `fleetaudit run` reads it."""
    monkeypatch.setenv("FLEETAUDIT_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("FLEETAUDIT_ACCESS_KEY_SECRET", secret)


class FakeClock:
    """A settable clock in float seconds; call it to read the time."""

    def __init__(self, now: float = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        """Jump to `now`."""
        self.now = now

    def advance(self, seconds: float) -> None:
        """Move forward by `seconds`."""
        self.now += seconds


class RecordingSleep:
    """An injected sleep that waits for nothing, records each wait and moves a fake clock."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self._clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self._clock is not None:
            self._clock.advance(seconds)
        await asyncio.sleep(0)


@contextlib.contextmanager
def emulator_url(fleet: Fleet, **create_app_kwargs: Any) -> Iterator[tuple[str, web.Application]]:
    """Serve an emulator over `fleet` on loopback; yields (base URL, app)."""
    create_app_kwargs.setdefault("credentials", {TEST_KEY_ID: TEST_SECRET})
    app = create_app(fleet, **create_app_kwargs)
    with serve_in_thread(app) as url:
        yield url, app


def requests_seen(app: web.Application) -> int:
    """Every request the emulator received, whatever became of it."""
    stats = app[STATS_KEY]
    counters = (stats.served, stats.throttled, stats.faults, stats.rejected)
    return sum(sum(counter.values()) for counter in counters)


def signed_params(
    method: str,
    action: str,
    params: Mapping[str, str],
    *,
    key_id: str = TEST_KEY_ID,
    secret: str = TEST_SECRET,
    now: float = FIXED_NOW,
    nonce: str | None = None,
) -> dict[str, str]:
    """Every parameter of one call, common ones included, signed for `method`."""
    full = {
        "Action": action,
        "Version": "2018-01-20",
        "Format": "JSON",
        "AccessKeyId": key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        **params,
    }
    full["Signature"] = sign(method, full, secret)
    return full


async def call_emulator(
    url: str,
    action: str,
    params: Mapping[str, str],
    *,
    method: str = "POST",
    form: bool = False,
    **sign_kwargs: Any,
) -> tuple[int, Mapping[str, str], bytes]:
    """One signed call on a fresh connection: (HTTP status, headers, raw body).

    With `form=True` the parameters go in a form body, else in the query string.
    """
    full = signed_params(method, action, params, **sign_kwargs)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        if form:
            request = session.request(method, url, data=full)
        else:
            request = session.request(method, url, params=full)
        async with request as response:
            return response.status, dict(response.headers), await response.read()


class FleetBuilder:
    """A `StaticFleet` built one call per device, task, firmware or job, with defaults.

    Every default is plain data: product `pk1`, module `default`, job `J1` of firmware `F1`
    (version 1.1.0), times at `now_ms`. Each method returns the builder, so calls chain:
    `FleetBuilder().device("d1", {"default": "1.0.0"}).task("T1", "d1").build()`.
    """

    def __init__(self, *, product_key: str = "pk1", now_ms: int = int(FIXED_NOW * 1000)) -> None:
        self.product_key = product_key
        self.now_ms = now_ms
        self._devices: list[FleetDevice] = []
        self._tasks: list[FleetTask] = []
        self._firmware: list[FleetFirmware] = []
        self._jobs: list[FleetJob] = []
        self._missing: list[tuple[str, str, str]] = []

    def device(
        self,
        name: str,
        modules: Mapping[str, str] | None = None,
        *,
        product_key: str | None = None,
        iot_id: str | None = None,
    ) -> FleetBuilder:
        """A device named `name` (IotId `iot-<name>`) reporting `modules` (name -> version)."""
        self._devices.append(
            FleetDevice(
                product_key or self.product_key, name, iot_id or f"iot-{name}", dict(modules or {})
            )
        )
        return self

    def missing(self, name: str, *, product_key: str | None = None) -> FleetBuilder:
        """A row of the device list that the platform does not know."""
        self._missing.append((product_key or self.product_key, name, ""))
        return self

    def task(
        self,
        task_id: str,
        device: str,
        status: str = "QUEUED",
        *,
        job: str = "J1",
        firmware: str = "F1",
        module: str = "default",
        src: str = "",
        dest: str = "1.1.0",
        created_ms: int | None = None,
        modified_ms: int | None = None,
        product_name: str = "",
        product_key: str | None = None,
        progress: int = 0,
        task_desc: str = "",
    ) -> FleetBuilder:
        """An upgrade task of `device` in `status`, part of `job` of `firmware`."""
        self._tasks.append(
            FleetTask(
                task_id=task_id,
                job_id=job,
                firmware_id=firmware,
                product_key=product_key or self.product_key,
                device_name=device,
                module_name=module,
                src_version=src,
                dest_version=dest,
                status=status,
                utc_create_ms=self.now_ms if created_ms is None else created_ms,
                utc_modified_ms=self.now_ms if modified_ms is None else modified_ms,
                product_name=product_name,
                progress=progress,
                task_desc=task_desc,
            )
        )
        return self

    def firmware(
        self,
        firmware_id: str = "F1",
        *,
        name: str | None = None,
        dest: str = "1.1.0",
        src: str = "",
        status: int = 1,
        type: int = 0,
        module: str = "default",
        product_name: str = "",
        sign: str = "abc",
        size: int = 1024,
        url: str | None = None,
        created_ms: int | None = None,
        modified_ms: int | None = None,
        product_key: str | None = None,
    ) -> FleetBuilder:
        """A verified (status 1) MD5-signed firmware package; `name` defaults to its id."""
        self._firmware.append(
            FleetFirmware(
                firmware_id=firmware_id,
                firmware_name=firmware_id if name is None else name,
                product_key=product_key or self.product_key,
                product_name=product_name,
                module_name=module,
                src_version=src,
                dest_version=dest,
                status=status,
                type=type,
                sign_method="MD5",
                firmware_sign=sign,
                firmware_size=size,
                verify_progress=100,
                firmware_url=url or f"https://ota.example.com/fw/{firmware_id}.bin",
                utc_create_ms=self.now_ms if created_ms is None else created_ms,
                utc_modified_ms=self.now_ms if modified_ms is None else modified_ms,
            )
        )
        return self

    def job(
        self,
        job_id: str = "J1",
        firmware: str = "F1",
        status: str = "IN_PROGRESS",
        *,
        target_selection: str = "SPECIFIC",
        selection_type: str = "STATIC",
        created_ms: int | None = None,
        modified_ms: int | None = None,
        product_key: str | None = None,
        timeout_minutes: int | None = None,
    ) -> FleetBuilder:
        """A firmware upgrade job (batch) of `firmware` in `status`."""
        self._jobs.append(
            FleetJob(
                job_id=job_id,
                firmware_id=firmware,
                product_key=product_key or self.product_key,
                status=status,
                job_type="UPGRADE_FIRMWARE",
                target_selection=target_selection,
                selection_type=selection_type,
                utc_create_ms=self.now_ms if created_ms is None else created_ms,
                utc_modified_ms=self.now_ms if modified_ms is None else modified_ms,
                timeout_minutes=timeout_minutes,
            )
        )
        return self

    def build(self) -> StaticFleet:
        """The fleet of everything added so far."""
        return StaticFleet(
            self._devices, self._tasks, self._firmware, self._jobs, missing_devices=self._missing
        )


def static_fleet() -> StaticFleet:
    """A hand-made fleet: product `pk1`, devices d1 (3 tasks), d2 and big (250 modules)."""
    day = 86_400_000
    fleet = FleetBuilder()
    now = fleet.now_ms
    fleet.device("d1", {"default": "1.0.0", "ble": "2.0.0"})
    fleet.device("d2", {"default": "1.1.0"})
    fleet.device("big", {f"m{i:03d}": "1.0" for i in range(250)})
    for task_id, device, status, job, module in [
        ("T1", "d1", "QUEUED", "J1", "default"),
        ("T2", "d1", "IN_PROGRESS", "J1", "ble"),
        ("T3", "d1", "SUCCEEDED", "J1", "default"),
        ("T4", "d2", "CONFIRM", "J2", "default"),
    ]:
        fleet.task(
            task_id, device, status, job=job, module=module, src="1.0.0", product_name="Plug",
            created_ms=now - 3 * day, modified_ms=now - day,
        )  # fmt: skip
    fleet.firmware(
        name="plug-1.1.0", product_name="Plug",
        url="https://ota.example.com/fw/F1.bin?Expires=1&Signature=s3cr3t",
        created_ms=now - 9 * day, modified_ms=now - 8 * day,
    )  # fmt: skip
    fleet.job("J1", created_ms=now - 5 * day, modified_ms=now - 4 * day)
    fleet.job("J2", status="COMPLETED", target_selection="ALL", selection_type="DYNAMIC",
              created_ms=now - 5 * day, modified_ms=now - 4 * day)  # fmt: skip
    return fleet.missing("ghost").build()


def write_device_list(path: Path, fleet: Fleet, duplicates: int = 0) -> Path:
    """The fleet's device list as CSV at `path`, with its first `duplicates` rows listed twice."""
    rows = list(fleet.iter_device_list())
    rows += rows[:duplicates]
    lines = ["product_key,device_name,iot_id", *(",".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Takes the lock, says so on stdout, and holds it until its stdin closes.
_HOLDER = """
import sys
from pathlib import Path
from fleetaudit.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held_elsewhere(out: Path) -> Iterator[int]:
    """A child process holding the lock on `out`; yields its pid, releases on exit."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "locked\n"  # readiness line: no sleeping
        yield child.pid
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        child.stdout.close()


# A metric sample keyed by (name, labels), so tests look values up without caring about order.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric_samples(text: str) -> Samples:
    """Every sample of a Prometheus textfile, read by `prometheus_client`; fails on a bad line."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric_key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    """The `Samples` key of metric `name` with exactly `labels`."""
    return (name, frozenset(labels.items()))
