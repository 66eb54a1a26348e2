"""Settings declared once: the CLI, job files and the manifest all follow the rows in config.py."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from fleetaudit.cli import build_parser, main
from fleetaudit.config import GateRules, Settings, settings_from, settings_reference
from fleetaudit.errors import EXIT_USAGE, UsageError
from fleetaudit.setting_kinds import QuotaStore, shown_store
from fleetaudit.settings import add_options, describe, manifest_values, option_values, rows


@pytest.mark.parametrize(
    ("option", "value", "accepts"),
    [
        ("--qps", "-1", "greater than 0"),
        ("--qps", "0", "greater than 0"),
        ("--qps", "nan", "greater than 0"),
        ("--qps", "inf", "greater than 0"),
        ("--qps", "fast", "greater than 0"),
        ("--concurrency", "-3", "from 1 to 4096"),
        ("--concurrency", "0", "from 1 to 4096"),
        ("--concurrency", "10000000000", "from 1 to 4096"),
        ("--concurrency", "2.5", "from 1 to 4096"),
        ("--min-coverage", "1.5", "from 0 to 1"),
        ("--request-timeout", "-1", "greater than 0"),
        ("--retry-attempts", "0", "from 1 to 100"),
        ("--endpoint", "ftp://example.com/", "http:// or https://"),
        ("--endpoint", "http://example.com:99999/", "http:// or https://"),
        ("--now", "tuesday", "ISO 8601"),
        ("--method", "PUT", "POST, GET"),
        ("--cancel-statuses", "QUEUED,SUCCEEDED", "one or more of CONFIRM"),
        ("--cancel-statuses", ",", "one or more of CONFIRM"),
        ("--quota-share", "0", "from 1 to 64"),
        ("--quota-store", "redis://:pw-not-shown@/0", "no host"),
        ("--quota-store", "redis://:pw-not-shown@host:abc/0", "port is not a number"),
        ("--quota-store", " ", "a redis://host:port/db URL"),
    ],
)
def test_bad_option_value_is_a_usage_error_naming_setting_and_range(
    option: str, value: str, accepts: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bad value on the command line exits 2 before any call, naming the option and range."""
    argv = ["run", "--endpoint", "http://127.0.0.1:1/", "--devices", str(tmp_path / "d.csv")]
    code = main([*argv, option, value])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert option in err
    assert accepts in err
    assert "Traceback" not in err
    assert "pw-not-shown" not in err


@pytest.mark.parametrize(
    ("line", "key", "accepts"),
    [
        ("concurrency = 10000000000", "concurrency", "from 1 to 4096"),
        ("concurrency = 0", "concurrency", "from 1 to 4096"),
        ("qps = -1", "qps", "greater than 0"),
        ("qps = nan", "qps", "greater than 0"),
        ("qps = inf", "qps", "greater than 0"),
        ("retry_wait_max = -1", "retry_wait_max", "from 0 to 600"),
        ("[gate]\nshow_devices = 0", "gate.show_devices", "from 1 to 100000"),
        ("cancel_statuses = []", "cancel_statuses", "one or more of CONFIRM"),
        ("cancel_statuses = [1]", "cancel_statuses", "one or more of CONFIRM"),
        ("quota_store = 5", "quota_store", "a redis://host:port/db URL"),
        ('quota_store = "rediss://:pw@/0"', "quota_store", "no host"),
        ("quota_share = 100", "quota_share", "from 1 to 64"),
    ],
)
def test_bad_job_file_value_is_a_usage_error_naming_file_key_and_range(
    line: str, key: str, accepts: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bad value in a job file exits 2, naming the file, the key and the accepted range."""
    job = tmp_path / "job.toml"
    job.write_text(f'endpoint = "http://127.0.0.1:1/"\ndevices = "d.csv"\n{line}\n', "utf-8")
    code = main(["run", str(job)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"job.toml: {key}: must be " in err
    assert accepts in err


def test_missing_required_setting_names_flag_and_key(tmp_path: Path) -> None:
    """A run without an endpoint says which option or job-file key would give one."""
    with pytest.raises(UsageError, match=r"no endpoint: give --endpoint or `endpoint`"):
        settings_from(None, build_parser().parse_args(["run", "--devices", "d.csv"]))


def test_every_flagged_setting_is_a_run_option_and_nothing_else_is() -> None:
    """`fleetaudit run --help` lists exactly the settings that have a flag, with their help
    (and `--plan`, which turns the run into `fleetaudit plan` rather than setting anything)."""
    run_help = _subcommand(build_parser(), "run").format_help()
    for name, flag, _accepts, help_text, _default in describe(Settings):
        if flag is None:
            continue
        assert flag in run_help, name
        assert help_text.split()[0] in run_help, name
    declared = {row.flag for row in rows(Settings).values() if row.flag}
    options = {
        option
        for action in _subcommand(build_parser(), "run")._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--plan")
    }
    assert options == declared


def test_command_line_sets_only_what_it_names() -> None:
    """Options left out on the command line do not override the job file's values."""
    parser = argparse.ArgumentParser()
    add_options(parser, Settings)
    assert option_values(Settings, parser.parse_args(["--qps", "2.5", "--resume"])) == {
        "qps": 2.5,
        "resume": True,
    }


def test_manifest_records_every_recorded_setting_as_json() -> None:
    """The manifest's config has one JSON value per recorded setting, gate included."""
    settings = Settings(
        endpoint="http://127.0.0.1:1/",
        devices=Path("d.csv"),
        now=1_732_009_663_000,
        gate=GateRules(max_critical=0),
    )
    recorded = manifest_values(settings)
    assert set(recorded) == {name for name, row in rows(Settings).items() if row.manifest}
    assert recorded["devices"] == "d.csv"
    assert recorded["now"] == "2024-11-19T09:47:43Z"
    assert recorded["gate"]["max_critical"] == 0
    assert recorded["quotas"] == {}


def test_every_setting_has_help_and_a_default_of_its_type() -> None:
    """Each row has help text, and its default is None or passes its own validation."""
    for name, _flag, _accepts, help_text, default in describe(Settings):
        assert help_text, name
        row = rows(Settings)[name]
        if default is None or dataclasses.is_dataclass(default) or name == "quotas":
            continue
        assert row.kind.from_toml(
            str(default) if isinstance(default, Path) else default, Path()
        ) == (Path(default) if isinstance(default, Path) else default)


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    raise AssertionError(name)


def test_settings_doc_is_generated_from_the_rows() -> None:
    """docs/SETTINGS.md equals what the rows render (`make settings-doc` rewrites it)."""
    doc = Path(__file__).parent.parent / "docs" / "SETTINGS.md"
    assert doc.read_text(encoding="utf-8") == settings_reference()


@pytest.mark.parametrize(
    ("raw", "chosen"),
    [
        (["queued", "IN_PROGRESS", "QUEUED"], ("QUEUED", "IN_PROGRESS")),
        ("confirm, notified", ("CONFIRM", "NOTIFIED")),
    ],
)
def test_cancel_statuses_read_from_a_list_or_text_folded_and_deduplicated(
    raw: object, chosen: tuple[str, ...]
) -> None:
    """cancel_statuses takes a TOML list or comma-separated text, upper-cased, each once."""
    assert rows(Settings)["cancel_statuses"].kind.from_toml(raw, Path()) == chosen


def test_cancel_statuses_default_to_what_the_platform_cancels() -> None:
    """By default only CONFIRM, QUEUED and NOTIFIED are planned: IN_PROGRESS is not cancelled."""
    assert Settings().cancel_statuses == ("CONFIRM", "QUEUED", "NOTIFIED")


@pytest.mark.parametrize(
    ("store", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:pw@h/0", "redis://user:***@h/0"),
        ("rediss://h:6380/0?password=pw&db=1", "rediss://h:6380/0?password=***&db=1"),
        ("unix:///run/redis.sock?password=pw", "unix:///run/redis.sock?password=***"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("/var/lib/fleetaudit/quota", "/var/lib/fleetaudit/quota"),
    ],
)
def test_a_quota_store_is_shown_without_its_password(store: str, shown: str) -> None:
    """The manifest and messages show a Redis URL without the password, wherever it is."""
    assert shown_store(store) == shown
    assert QuotaStore().to_json(store) == shown
