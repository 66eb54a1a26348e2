"""Policy files, job files, durations and times: parsed right, refused with the file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleetaudit.config import GateRules, Settings, load_job, settings_from
from fleetaudit.durations import format_duration, parse_duration, parse_iso8601
from fleetaudit.errors import UsageError
from fleetaudit.policy import DEFAULT_STALLED_AFTER, Policy, Target, load_policy
from fleetaudit.settings import build

SAMPLE_POLICY = Path(__file__).parent.parent / "sample_inputs" / "policy.toml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("6h", 21600), ("7d", 604800), ("1d12h", 129600), ("45s", 45), (" 2h ", 7200)],
)
def test_parse_duration_accepts_units(text: str, seconds: int) -> None:
    """Each documented duration form gives its number of seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "6", "h", "12x", "6h1d", "1.5h", "0h", "-1h", "1 d"])
def test_parse_duration_rejects_malformed(text: str) -> None:
    """Malformed, out-of-order and zero durations raise ValueError naming the text."""
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (86400, "24h"),
        (129600, "36h"),
        (172800, "2d"),
        (273600, "3d 4h"),
        (3661, "1h 1m"),
    ],
)
def test_format_duration_keeps_two_largest_units(seconds: int, text: str) -> None:
    """Durations read compactly in their two largest units, hours under two days."""
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-11-19T09:47:43Z", 1732009663000),
        ("2024-11-19T09:47:43.250Z", 1732009663250),
        ("2024-11-19T17:47:43+08:00", 1732009663000),
        ("2024-11-19T09:47:43", 1732009663000),
    ],
)
def test_parse_iso8601_to_epoch_ms(text: str, ms: int) -> None:
    """Z, offsets and naive (UTC) times all give UTC epoch milliseconds."""
    assert parse_iso8601(text) == ms


def test_parse_iso8601_rejects_garbage() -> None:
    """Text that is not ISO 8601 raises ValueError."""
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_iso8601("yesterday")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_policy_defaults_match_the_contract() -> None:
    """Policy() carries the contract's stalled_after defaults and no targets."""
    policy = Policy()
    assert dict(policy.stalled_after) == {
        "CONFIRM": 7 * 86400,
        "QUEUED": 86400,
        "NOTIFIED": 86400,
        "IN_PROGRESS": 6 * 3600,
    }
    assert policy.targets == ()


def test_load_policy_reads_both_target_kinds(tmp_path: Path) -> None:
    """A policy file gives overridden durations, kept defaults and both kinds of target."""
    path = write(
        tmp_path,
        "policy.toml",
        """
[stalled_after]
QUEUED = "12h"

[[targets]]
product_key = "pk1"
module = "default"
firmware_id = "167"

[[targets]]
product_key = "pk1"
module = "ble"
version = "2.4.1"
""",
    )
    policy = load_policy(path)
    assert policy.stalled_after["QUEUED"] == 12 * 3600
    assert policy.stalled_after["CONFIRM"] == DEFAULT_STALLED_AFTER["CONFIRM"]
    assert policy.targets == (
        Target("pk1", "default", firmware_id="167"),
        Target("pk1", "ble", version="2.4.1"),
    )


def test_load_policy_target_module_defaults_to_default(tmp_path: Path) -> None:
    """A target without a module names the whole-device 'default' module."""
    path = write(tmp_path, "p.toml", '[[targets]]\nproduct_key = "pk"\nversion = "1"\n')
    assert load_policy(path).targets == (Target("pk", "default", version="1"),)


def test_sample_policy_loads() -> None:
    """The shipped sample policy is valid and uses both target kinds."""
    policy = load_policy(SAMPLE_POLICY)
    assert any(t.firmware_id for t in policy.targets)
    assert any(t.version for t in policy.targets)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('colour = "red"\n', "colour"),
        ('[stalled_after]\nQUEUED = "soon"\n', "stalled_after.QUEUED"),
        ("[stalled_after]\nQUEUED = 5\n", "stalled_after.QUEUED"),
        ('[stalled_after]\nSUCCEEDED = "1h"\n', "stalled_after.SUCCEEDED"),
        ('[[targets]]\nproduct_key = "p"\nmodule = "m"\n', "targets[0]"),
        (
            '[[targets]]\nproduct_key = "p"\nmodule = "m"\nversion = "1"\nfirmware_id = "2"\n',
            "targets[0]",
        ),
        ('[[targets]]\nmodule = "m"\nversion = "1"\n', "targets[0].product_key"),
        ('[[targets]]\nproduct_key = "p"\nversion = "1"\nbranch = "x"\n', "targets[0].branch"),
        (
            '[[targets]]\nproduct_key = "p"\nversion = "1"\n'
            '[[targets]]\nproduct_key = "p"\nmodule = "default"\nversion = "2"\n',
            "targets[1]",
        ),
        ('targets = "all"\n', "targets"),
    ],
)
def test_load_policy_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    """Each invalid policy raises UsageError naming the file and the offending key."""
    path = write(tmp_path, "policy.toml", text)
    with pytest.raises(UsageError, match=re.escape(f"policy.toml: {key}:")):
        load_policy(path)


def test_load_policy_missing_file(tmp_path: Path) -> None:
    """A missing policy file is a UsageError naming it."""
    with pytest.raises(UsageError, match=r"nope\.toml: cannot read"):
        load_policy(tmp_path / "nope.toml")


def test_load_policy_invalid_toml(tmp_path: Path) -> None:
    """A file that is not TOML is a UsageError naming it."""
    with pytest.raises(UsageError, match=r"p\.toml: not valid TOML"):
        load_policy(write(tmp_path, "p.toml", "[[[\n"))


FULL_JOB = """
endpoint = "http://127.0.0.1:8686/"
devices = "devices.csv"
policy = "/etc/fleet/policy.toml"
out = "reports"
qps = 5
concurrency = 16
now = "2024-11-19T09:47:43Z"
resume = true
method = "get"
request_timeout = 10
connect_timeout = 2.5
retry_attempts = 6
log_format = "json"
metrics = "metrics.prom"
min_coverage = 0.95

[quotas]
QueryOTAFirmware = 15
ListOTAJobByDevice = 2.5

[gate]
max_critical = 0
"""


def test_load_job_reads_every_setting(tmp_path: Path) -> None:
    """Every job file setting is parsed, typed and relative paths resolve beside the file."""
    job = settings_from(write(tmp_path, "nightly.toml", FULL_JOB))
    assert job == Settings(
        endpoint="http://127.0.0.1:8686/",
        devices=tmp_path / "devices.csv",
        policy=Path("/etc/fleet/policy.toml"),
        out=tmp_path / "reports",
        qps=5.0,
        quotas={"QueryOTAFirmware": 15.0, "ListOTAJobByDevice": 2.5},
        concurrency=16,
        now=1732009663000,
        resume=True,
        method="GET",
        request_timeout=10.0,
        connect_timeout=2.5,
        retry_attempts=6,
        log_format="json",
        metrics=tmp_path / "metrics.prom",
        min_coverage=0.95,
        gate=GateRules(max_critical=0),
    )


def test_load_job_accepts_toml_datetime(tmp_path: Path) -> None:
    """An unquoted TOML datetime for `now` gives epoch ms too."""
    job = load_job(write(tmp_path, "j.toml", "now = 2024-11-19T09:47:43Z\n"))
    assert job == {"now": 1732009663000}


def test_load_job_empty_file_sets_nothing(tmp_path: Path) -> None:
    """An empty job file leaves every setting unset."""
    assert load_job(write(tmp_path, "j.toml", "")) == {}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("speed = 3\n", "speed"),
        ('endpoint = "ftp://x"\n', "endpoint"),
        ("devices = 3\n", "devices"),
        ("qps = 0\n", "qps"),
        ('qps = "fast"\n', "qps"),
        ("concurrency = 1.5\n", "concurrency"),
        ("concurrency = true\n", "concurrency"),
        ('now = "tuesday"\n', "now"),
        ('resume = "yes"\n', "resume"),
        ('method = "PUT"\n', "method"),
        ("request_timeout = -1\n", "request_timeout"),
        ("retry_attempts = 0\n", "retry_attempts"),
        ('log_format = "xml"\n', "log_format"),
        ("min_coverage = 1.5\n", "min_coverage"),
        ("[quotas]\nListDevices = 3\n", "quotas.ListDevices"),
        ("[quotas]\nQueryOTAFirmware = 0\n", "quotas.QueryOTAFirmware"),
        ("quotas = 3\n", "quotas"),
        ("gate = 1\n", "gate"),
    ],
)
def test_load_job_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    """Each unknown key or wrongly typed value raises UsageError naming the file and key."""
    with pytest.raises(UsageError, match=rf"job\.toml: {key}:"):
        load_job(write(tmp_path, "job.toml", text))


def test_later_layers_override_earlier_ones() -> None:
    """Settings the command line sets win; the rest come from the job file or the defaults."""
    job = {"endpoint": "http://a/", "qps": 5.0, "resume": True}
    merged = build(Settings, job, {"qps": 2.0, "concurrency": 4})
    assert merged == Settings(endpoint="http://a/", qps=2.0, resume=True, concurrency=4)


def test_override_with_false_still_wins() -> None:
    """A setting overridden with False (not absent) still wins."""
    assert build(Settings, {"resume": True}, {"resume": False}).resume is False
