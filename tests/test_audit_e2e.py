"""End-to-end audits against the emulator over loopback: findings, tables, faults, secrets.

The main scenario is a hand-made fleet in which every finding type occurs; its expected
findings are written out below as literal rows and compared with what DuckDB reads back
through the report glob. Task ages are judged against a fixed `--now` (NOW_ISO) while the
emulator and the client keep real time, since request timestamps must be current.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetaudit import cli
from fleetaudit.api.protocol import ACTIONS
from fleetaudit.config import Settings
from fleetaudit.emulator.app import STATS_KEY
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.emulator.fleet import StaticFleet
from fleetaudit.models import Credentials
from fleetaudit.pipeline import RunOutcome, run_audit
from fleetaudit.policy import Policy
from fleetaudit.report.schema import RUN_TABLES, TABLES

from helpers import (
    FIXED_NOW,
    UNLIMITED,
    FleetBuilder,
    emulator_url,
    set_env_credentials,
    write_device_list,
)

KEY_ID = "e2e-key"
SECRET = "e2e-Secret-7f3a9c"
NOW_MS = int(FIXED_NOW * 1000)
NOW_ISO = "2024-11-19T09:47:43Z"
HOUR = 3_600_000
DAY = 24 * HOUR
# The presigned part of every firmware URL in the fleet: it must never reach a report.
URL_QUERY_MARKER = "PRESIGNEDe2eSIG"
FINDINGS_GLOB = "run_date=*/run_id=*/findings.parquet"

POLICY_TOML = """\
[[targets]]
product_key = "pk1"
module = "default"
firmware_id = "F1"

[[targets]]
product_key = "pk1"
module = "ble"
version = "3.0.0"
"""

# finding_type, severity, product_key, device_name, module_name, task_id, task_status,
# observed_version, expected_version, firmware_id, job_id, age_seconds
FindingRow = tuple[
    str, str, str, str, str | None, str | None, str | None,
    str | None, str | None, str | None, str | None, int | None,
]  # fmt: skip
EXPECTED_FINDINGS: list[FindingRow] = [
    # pk1: policy targets (default -> firmware F1 = 2.0.0, ble -> literal 3.0.0).
    ("version_drift", "warning", "pk1", "drift1", "default", None, None,
     "1.0.0", "2.0.0", "F1", None, None),
    ("version_drift", "warning", "pk1", "drift2", "ble", None, None,
     "2.9.0", "3.0.0", None, None, None),
    ("module_missing", "warning", "pk1", "noble", "ble", None, None,
     None, "3.0.0", None, None, None),
    # big's targeted modules sit on page 2 of its module list.
    ("version_drift", "warning", "pk1", "big", "default", None, None,
     "1.9.0", "2.0.0", "F1", None, None),
    ("device_not_found", "warning", "pk1", "ghost", None, None, None,
     None, None, None, None, None),
    # pk2: no target; a three-way tie is won by the highest version (1.10.0, not 1.9.0).
    ("version_drift", "info", "pk2", "tie-a", "default", None, None,
     "1.2.0", "1.10.0", None, None, None),
    ("version_drift", "info", "pk2", "tie-c", "default", None, None,
     "1.9.0", "1.10.0", None, None, None),
    # pk3: task rules, judged at NOW_ISO.
    ("stalled_task", "warning", "pk3", "stalled", "default", "S3", "QUEUED",
     "1.0.0", "1.1.0", "G1", "K1", 48 * 3600),
    ("stalled_task", "warning", "pk3", "stalled", "wifi", "S4", "CONFIRM",
     "1.0.0", "1.1.0", "G1", "K1", 8 * 86400),
    ("task_src_mismatch", "critical", "pk3", "srcmm", "default", "S5", "NOTIFIED",
     "1.0.0", "1.1.0", "GD", "KD", 3600),
    ("task_already_applied", "info", "pk3", "applied", "default", "S6", "QUEUED",
     "1.1.0", "1.1.0", "G1", "K1", 3600),
    ("version_drift", "info", "pk3", "applied", "default", None, None,
     "1.1.0", "1.0.0", None, None, None),
    ("orphan_task", "warning", "pk3", "orphan1", "default", "S7", "QUEUED",
     "1.0.0", "1.1.0", "G1", "KC", 3600),
    ("orphan_task", "warning", "pk3", "orphan2", "default", "S8", "CONFIRM",
     "1.0.0", "1.1.0", "G1", "KX", 3600),
    ("firmware_unverified", "warning", "pk3", "unver0", "default", "S9", "QUEUED",
     "1.0.0", "1.1.0", "G0", "K0", 3600),
    ("firmware_unverified", "critical", "pk3", "unver3", "default", "S10", "QUEUED",
     "1.0.0", "1.1.0", "G3", "K3", 3600),
    ("duplicate_tasks", "warning", "pk3", "dups", "default", "S11", "QUEUED",
     "1.0.0", "1.1.0", "G1", "K1", 3600),
    ("duplicate_tasks", "warning", "pk3", "dups", "default", "S12", "NOTIFIED",
     "1.0.0", "1.1.0", "G1", "K1", 2 * 3600),
]  # fmt: skip
UNFINISHED_TASK_IDS = {f"S{i}" for i in range(1, 13)}
TERMINAL_TASK_IDS = {"S13", "S14", "S15"}


def _firmware(
    fleet: FleetBuilder, firmware_id: str, product_key: str, status: int, src: str = ""
) -> None:
    url = (
        f"https://ota.example.com/fw/{firmware_id}.bin?Expires=1732013263"
        f"&OSSAccessKeyId=LTAIe2e&Signature={URL_QUERY_MARKER}%3D"
    )
    fleet.firmware(
        firmware_id, name=f"fw-{firmware_id}", product_key=product_key, status=status, src=src,
        dest="2.0.0" if product_key == "pk1" else "1.1.0", type=1 if src else 0,
        sign="d41d8cd98f00b204e9800998ecf8427e", url=url,
        created_ms=NOW_MS - 30 * DAY, modified_ms=NOW_MS - 29 * DAY,
    )  # fmt: skip


def _job(fleet: FleetBuilder, job_id: str, firmware_id: str, status: str) -> None:
    fleet.job(job_id, firmware_id, status, created_ms=NOW_MS - 20 * DAY,
              modified_ms=NOW_MS - 19 * DAY)  # fmt: skip


def _task(
    fleet: FleetBuilder,
    task_id: str,
    device: str,
    status: str,
    firmware_id: str,
    job_id: str,
    age_ms: int,
    *,
    module: str = "default",
    src: str = "",
) -> None:
    modified = NOW_MS - age_ms
    fleet.task(
        task_id, device, status, job=job_id, firmware=firmware_id, module=module, src=src,
        created_ms=modified - HOUR, modified_ms=modified,
    )  # fmt: skip


def scenario_fleet() -> StaticFleet:
    """Every finding type, plus the cases that must make none (see EXPECTED_FINDINGS)."""
    fleet = FleetBuilder(product_key="pk3", now_ms=NOW_MS)
    filler = {f"m{i:03d}": "1.0" for i in range(220)}
    for name, modules in [
        ("ok1", {"default": "2.0.0", "ble": "3.0.0"}),
        ("drift1", {"default": "1.0.0", "ble": "3.0.0"}),
        ("drift2", {"default": "2.0.0", "ble": "2.9.0"}),
        ("noble", {"default": "2.0.0"}),
        ("big", {**filler, "default": "1.9.0", "ble": "3.0.0"}),
    ]:
        fleet.device(name, modules, product_key="pk1")
    for name, version in [("tie-a", "1.2.0"), ("tie-b", "1.10.0"), ("tie-c", "1.9.0")]:
        fleet.device(name, {"default": version}, product_key="pk2")
    pk3 = ["fresh", "stalled", "srcmm", "orphan1", "orphan2", "unver0", "unver3", "dups", "term"]
    wifi = {"fresh", "stalled"}
    for name in pk3:
        fleet.device(name, {"default": "1.0.0", **({"wifi": "1.0.0"} if name in wifi else {})})
    fleet.device("applied", {"default": "1.1.0"})
    _task(fleet, "S1", "fresh", "QUEUED", "G1", "K1", HOUR)  # 1h < 24h: not stalled
    _task(fleet, "S2", "fresh", "IN_PROGRESS", "G1", "K1", 5 * HOUR, module="wifi")  # 5h < 6h
    _task(fleet, "S3", "stalled", "QUEUED", "G1", "K1", 2 * DAY)
    _task(fleet, "S4", "stalled", "CONFIRM", "G1", "K1", 8 * DAY, module="wifi")
    _task(fleet, "S5", "srcmm", "NOTIFIED", "GD", "KD", HOUR, src="0.9.0")
    _task(fleet, "S6", "applied", "QUEUED", "G1", "K1", HOUR)
    _task(fleet, "S7", "orphan1", "QUEUED", "G1", "KC", HOUR)
    _task(fleet, "S8", "orphan2", "CONFIRM", "G1", "KX", HOUR)
    _task(fleet, "S9", "unver0", "QUEUED", "G0", "K0", HOUR)
    _task(fleet, "S10", "unver3", "QUEUED", "G3", "K3", HOUR)
    _task(fleet, "S11", "dups", "QUEUED", "G1", "K1", HOUR)
    _task(fleet, "S12", "dups", "NOTIFIED", "G1", "K1", 2 * HOUR)
    # Terminal tasks that would trip every rule if they were looked at.
    _task(fleet, "S13", "term", "SUCCEEDED", "G3", "KC", 30 * DAY)
    _task(fleet, "S14", "term", "FAILED", "G0", "KX", 30 * DAY, src="0.5.0")
    _task(fleet, "S15", "term", "CANCELED", "G3", "K3", 30 * DAY)
    _firmware(fleet, "F1", "pk1", 1)
    _firmware(fleet, "G1", "pk3", 1)
    _firmware(fleet, "G0", "pk3", 0)
    _firmware(fleet, "G3", "pk3", 3)
    _firmware(fleet, "GD", "pk3", 1, src="0.9.0")
    _job(fleet, "K1", "G1", "IN_PROGRESS")
    _job(fleet, "KC", "G1", "COMPLETED")
    _job(fleet, "KX", "G1", "CANCELED")
    _job(fleet, "K0", "G0", "IN_PROGRESS")
    _job(fleet, "K3", "G3", "IN_PROGRESS")
    _job(fleet, "KD", "GD", "IN_PROGRESS")
    return fleet.missing("ghost", product_key="pk1").build()


def run_cli(
    tmp_path: Path,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    *extra: str,
    verbose: bool = False,
) -> tuple[int, Path]:
    """`fleetaudit run` over the scenario's device list and policy; (exit code, OUT)."""
    set_env_credentials(monkeypatch, KEY_ID, SECRET)
    devices = write_device_list(tmp_path / "devices.csv", scenario_fleet(), duplicates=3)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY_TOML, encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--verbose"] if verbose else []
    argv += ["run", "--endpoint", url, "--devices", str(devices), "--policy", str(policy)]
    argv += ["--out", str(out), "--now", NOW_ISO, "--qps", "1000", "--concurrency", "8", *extra]
    return cli.main(argv), out


@pytest.fixture
def scenario_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """OUT of one complete CLI run over the scenario fleet (tuya casing)."""
    with emulator_url(scenario_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED) as (url, _):
        code, out = run_cli(tmp_path, url, monkeypatch)
    assert code == 0
    return out


def read_findings(out: Path) -> list[FindingRow]:
    """Every finding under OUT, read as an analyst would: DuckDB over the hive glob."""
    query = """
        SELECT finding_type, severity, product_key, device_name, module_name, task_id,
               task_status, observed_version, expected_version, firmware_id, job_id,
               age_seconds
        FROM read_parquet(?, hive_partitioning = true)
    """
    with duckdb.connect() as con:
        rows = con.execute(query, [str(out / FINDINGS_GLOB)]).fetchall()
    return sorted(rows, key=repr)


def run_dir_of(out: Path) -> Path:
    """The run directory LATEST names."""
    return out / (out / "LATEST").read_text(encoding="utf-8").strip()


def read_table(out: Path, table: str) -> pa.Table:
    """One table of the run LATEST names."""
    return pq.read_table(run_dir_of(out) / f"{table}.parquet")


# ---------------------------------------------------------------------------- the scenario


@pytest.mark.parametrize("casing", ["tuya", "alibaba"])
def test_every_finding_type_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, casing: str
) -> None:
    """Both casings yield exactly the expected findings, no more and no fewer."""
    with emulator_url(
        scenario_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED, casing=casing
    ) as (url, _):
        code, out = run_cli(tmp_path, url, monkeypatch)
    assert code == 0
    assert read_findings(out) == sorted(EXPECTED_FINDINGS, key=repr)


def test_terminal_tasks_are_not_reported(scenario_out: Path) -> None:
    """tasks.parquet holds exactly the unfinished tasks; terminal ones appear nowhere."""
    task_ids = set(read_table(scenario_out, "tasks").column("task_id").to_pylist())
    finding_ids = set(read_table(scenario_out, "findings").column("task_id").to_pylist())
    assert task_ids == UNFINISHED_TASK_IDS
    assert not finding_ids & TERMINAL_TASK_IDS


def test_task_ages_follow_now(scenario_out: Path) -> None:
    """tasks.parquet ages are measured from --now, not from the wall clock."""
    tasks = read_table(scenario_out, "tasks").to_pydict()
    ages = dict(zip(tasks["task_id"], tasks["age_seconds"], strict=True))
    assert (ages["S1"], ages["S3"], ages["S4"]) == (3600, 2 * 86400, 8 * 86400)


def test_module_listing_reads_every_page(scenario_out: Path) -> None:
    """A device with 222 modules has all of them in module_versions and devices."""
    devices = read_table(scenario_out, "devices").to_pylist()
    big = next(d for d in devices if d["device_name"] == "big")
    modules = read_table(scenario_out, "module_versions").to_pydict()
    assert big["module_count"] == 222
    assert modules["device_name"].count("big") == 222


def test_every_table_has_its_full_schema(scenario_out: Path) -> None:
    """Each contract table is in the run directory with exactly its schema."""
    run_dir = run_dir_of(scenario_out)
    for table, schema in TABLES.items():
        assert pq.read_schema(run_dir / f"{table}.parquet").equals(schema), table


def test_manifest_matches_tables(scenario_out: Path) -> None:
    """manifest.json has the contract's keys and its counts agree with the tables."""
    run_dir = run_dir_of(scenario_out)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    required = {"schema_version", "run_id", "run_date", "started_at", "finished_at", "status"}
    assert required | {"fleetaudit_version", "config", "counts", "api", "rows"} <= set(manifest)
    assert (manifest["status"], manifest["run_id"]) == ("complete", run_dir.name[len("run_id=") :])
    assert manifest["rows"] == {
        t: pq.read_metadata(run_dir / f"{t}.parquet").num_rows for t in RUN_TABLES
    }
    statuses = Counter(read_table(scenario_out, "devices").column("audit_status").to_pylist())
    assert manifest["counts"]["devices"] == {"ok": 18, "not_found": 1, "error": 0}
    assert dict(statuses) == {"ok": 18, "not_found": 1}
    by_type = Counter((f[0], f[1]) for f in EXPECTED_FINDINGS)
    assert manifest["counts"]["findings"] == {
        kind: {sev: n for (k, sev), n in by_type.items() if k == kind} for kind, _ in by_type
    }


def test_latest_points_at_the_run(scenario_out: Path) -> None:
    """LATEST names the one run directory that the glob finds."""
    runs = list(scenario_out.glob("run_date=*/run_id=*"))
    assert runs == [run_dir_of(scenario_out)]


def test_duplicate_devices_are_audited_once(scenario_out: Path) -> None:
    """Devices listed twice have one devices row each."""
    devices = read_table(scenario_out, "devices").to_pydict()
    keys = list(zip(devices["product_key"], devices["device_name"], strict=True))
    assert len(keys) == len(set(keys)) == 19


def test_lookups_are_written_once(scenario_out: Path) -> None:
    """Each firmware and job behind a task, and the policy's firmware, has one row."""
    firmware = read_table(scenario_out, "firmware").column("firmware_id").to_pylist()
    jobs = read_table(scenario_out, "jobs").column("job_id").to_pylist()
    assert sorted(firmware) == ["F1", "G0", "G1", "G3", "GD"]
    assert sorted(jobs) == ["K0", "K1", "K3", "KC", "KD", "KX"]


# ---------------------------------------------------------------------------- secrets


def _texts_under(out: Path) -> Iterator[tuple[Path, str]]:
    """Every file under OUT as text; Parquet decoded to its rows."""
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            yield path, repr(pq.read_table(path).to_pylist())
        else:
            yield path, path.read_bytes().decode("utf-8", errors="replace")


def test_no_secret_in_any_output(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither the secret nor a presigned URL's query reaches a report, a log or the terminal."""
    caplog.set_level(logging.DEBUG)
    # Retries and a failing device put error messages in the logs and the errors table.
    plan = FaultPlan(seed=2, error_rate=0.1, garbage_rate=0.05, failing_devices={"ok1": "X.y"})
    with emulator_url(
        scenario_fleet(), credentials={KEY_ID: SECRET}, quotas=UNLIMITED, faults=plan
    ) as (url, _):
        # Errors are the point here: a run of them is still published, to be searched.
        code, out = run_cli(tmp_path, url, monkeypatch, "--min-coverage", "0", verbose=True)
    captured = capsys.readouterr()
    assert code == 0
    assert run_dir_of(out).name.removeprefix("run_id=") in captured.out
    assert read_table(out, "errors").num_rows > 0
    assert caplog.records  # the logs were really captured, so grepping them means something
    texts = [
        *_texts_under(out),
        (Path("stdout"), captured.out),
        (Path("stderr"), captured.err),
        (Path("log"), caplog.text),
    ]
    for path, text in texts:
        for marker in (SECRET, URL_QUERY_MARKER, "OSSAccessKeyId", "Expires="):
            assert marker not in text, f"{marker!r} in {path}"
    firmware = read_table(out, "firmware").to_pydict()
    urls = dict(zip(firmware["firmware_id"], firmware["firmware_url"], strict=True))
    assert urls["G1"] == "https://ota.example.com/fw/G1.bin"


# ---------------------------------------------------------------------------- faults


def small_fleet(size: int) -> StaticFleet:
    """`size` devices of one product, each with two modules and one unfinished task."""
    fleet = FleetBuilder(product_key="pk3", now_ms=NOW_MS)
    for i in range(size):
        fleet.device(f"d{i:02d}", {"default": "1.0.0", "wifi": "1.0.0"})
        _task(fleet, f"T{i}", f"d{i:02d}", "QUEUED", "G1", "K1", HOUR)
    _firmware(fleet, "G1", "pk3", 1)
    _job(fleet, "K1", "G1", "IN_PROGRESS")
    return fleet.build()


def settings_for(
    tmp_path: Path,
    url: str,
    fleet: StaticFleet,
    *,
    qps: float = 1000.0,
    retry_attempts: int = 12,
    retry_wait_max: float = 0.5,
) -> Settings:
    """Settings over `fleet`'s device list with short retry waits (they are real sleeps)."""
    return Settings(
        endpoint=url,
        devices=write_device_list(tmp_path / "devices.csv", fleet),
        out=tmp_path / "out",
        qps=qps,
        concurrency=8,
        retry_attempts=retry_attempts,
        retry_wait_initial=retry_wait_max / 25,
        retry_wait_max=retry_wait_max,
        now=NOW_MS,
    )


def assert_nothing_missing(outcome: RunOutcome, size: int) -> None:
    """Every device audited ok with its module and task rows, and no errors rows."""
    tables = {t: pq.read_table(outcome.run_dir / f"{t}.parquet") for t in TABLES}
    statuses = tables["devices"].column("audit_status").to_pylist()
    assert (outcome.exit_code, statuses) == (0, ["ok"] * size)
    assert tables["errors"].num_rows == 0
    assert tables["module_versions"].num_rows == 2 * size
    assert tables["tasks"].num_rows == size
    assert (tables["firmware"].num_rows, tables["jobs"].num_rows) == (1, 1)


async def test_throttling_loses_nothing(tmp_path: Path) -> None:
    """A server quota below the client's throttles calls, and every device still comes out ok."""
    fleet = small_fleet(10)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=dict.fromkeys(ACTIONS, 5.0)) as (
        url,
        app,
    ):
        settings = settings_for(tmp_path, url, fleet, qps=50.0)
        outcome = await run_audit(settings, Policy(), Credentials(KEY_ID, SECRET))
    assert sum(app[STATS_KEY].throttled.values()) > 0
    assert_nothing_missing(outcome, 10)
    throttled = sum(a["throttled"] for a in outcome.manifest["api"].values())
    assert throttled == sum(app[STATS_KEY].throttled.values())


async def test_injected_faults_lose_nothing(tmp_path: Path) -> None:
    """503s, dropped connections, garbage and broken bodies are retried until all is read."""
    plan = FaultPlan(
        seed=4,
        error_rate=0.1,
        error_statuses=(503,),
        drop_rate=0.05,
        garbage_rate=0.05,
        truncated_rate=0.05,
        system_error_rate=0.05,
    )
    fleet = small_fleet(20)
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED, faults=plan) as (
        url,
        app,
    ):
        outcome = await run_audit(
            settings_for(tmp_path, url, fleet), Policy(), Credentials(KEY_ID, SECRET)
        )
    assert {"error", "drop", "garbage"} <= set(app[STATS_KEY].faults)
    assert_nothing_missing(outcome, 20)


@pytest.mark.parametrize("code", ["InternalError", "iot.ota.SomethingBroken"])
async def test_failing_device_becomes_an_error_row(tmp_path: Path, code: str) -> None:
    """A device that always fails is an errors row and audit_status error; the run completes."""
    fleet = small_fleet(5)
    plan = FaultPlan(failing_devices={"d02": code})
    with emulator_url(fleet, credentials={KEY_ID: SECRET}, quotas=UNLIMITED, faults=plan) as (
        url,
        _,
    ):
        settings = settings_for(tmp_path, url, fleet, retry_attempts=3, retry_wait_max=0.05)
        outcome = await run_audit(settings, Policy(), Credentials(KEY_ID, SECRET))
    devices = {
        row["device_name"]: (row["audit_status"], row["error_code"])
        for row in pq.read_table(outcome.run_dir / "devices.parquet").to_pylist()
    }
    errors = pq.read_table(outcome.run_dir / "errors.parquet").to_pylist()
    assert outcome.manifest["status"] == "complete"
    assert devices == {**{f"d{i:02d}": ("ok", None) for i in range(5)}, "d02": ("error", code)}
    assert {(e["device_name"], e["error_code"]) for e in errors} == {("d02", code)}
    assert all(e["attempts"] == (3 if code == "InternalError" else 1) for e in errors)
