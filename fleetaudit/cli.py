"""The command line: `main(argv) -> int`; each command is a few lines calling the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import anyio

from fleetaudit import __version__
from fleetaudit.config import Settings
from fleetaudit.credentials import credentials_from_env
from fleetaudit.errors import (
    EXIT_INCOMPLETE,
    FleetauditError,
    exit_code_for,
)
from fleetaudit.models import Credentials
from fleetaudit.settings import add_options, option_values

log = logging.getLogger("fleetaudit")


EPILOG_RUN = """\
examples:
  fleetaudit run jobs/nightly.toml
  fleetaudit run --endpoint http://127.0.0.1:8686/ --devices fleet.csv --out reports/

Credentials come from the environment only: FLEETAUDIT_ACCESS_KEY_ID and
FLEETAUDIT_ACCESS_KEY_SECRET. Exit codes: 0 complete, 1 gate failed, 2 usage or input
error (nothing was called), 3 authentication or permission error, 4 incomplete (resumable).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetaudit",
        description="Audit a fleet of IoT devices through the platform's OTA API "
        "and write Parquet reports.",
    )
    parser.add_argument("--version", action="version", version=f"fleetaudit {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log each retry and lookup (stderr)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="audit the fleet and write a run's reports",
        description="Audit every device of a device list and write the run's Parquet reports.",
        epilog=EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("job", nargs="?", type=Path, metavar="JOB.toml", help="job file (TOML)")
    add_options(run, Settings)
    run.add_argument(
        "--plan", action="store_true", help="only print the plan (see `fleetaudit plan`)"
    )
    run.set_defaults(handler=_run_command)

    plan = commands.add_parser(
        "plan",
        help="print the calls and time each way of reading tasks would take",
        description="From the device list and the cheap discovery listings (ListOTAFirmware, "
        "ListOTAJobByFirmware), print the calls per action and the time under the quotas of a "
        "full and a tasks-only audit, per device and by the jobs' listings. Nothing else is "
        "called and nothing is written.",
        epilog="examples:\n  fleetaudit plan jobs/nightly.toml\n"
        "  fleetaudit run jobs/pre-rollout.toml --plan",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("job", nargs="?", type=Path, metavar="JOB.toml", help="job file (TOML)")
    add_options(plan, Settings)
    plan.set_defaults(handler=_plan_command)

    emulator = commands.add_parser(
        "emulator",
        help="serve a local emulator of the platform's OTA API",
        description="Serve a local, strict emulator of the platform's OTA API on loopback.",
        epilog="example:\n  fleetaudit emulator --port 8686 --devices 3000 --seed 7",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_emulator_arguments(emulator)
    emulator.set_defaults(handler=_emulator_command)

    cancel = commands.add_parser(
        "cancel",
        help="cancel the tasks a run found stalled (dry run unless --apply)",
        description="Plan, and with --apply make, CancelOTATaskByDevice calls for the tasks "
        "behind a run's findings. Without --apply nothing is called on the platform.",
        epilog="examples:\n"
        "  fleetaudit cancel reports/run_date=2026-11-23/run_id=20261123T020000Z-a1b2c3\n"
        "  fleetaudit cancel RUN_DIR --finding stalled_task --apply",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cancel.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    cancel.add_argument(
        "--finding",
        action="append",
        metavar="TYPE",
        help="finding type to act on (repeatable; default: stalled_task, orphan_task, "
        "task_already_applied)",
    )
    cancel.add_argument(
        "--device-list", type=Path, metavar="PATH", help="only devices in this list"
    )
    # The same rows as `run`'s: one declaration, one validation (endpoint, cancel_statuses
    # and the instance id default to what the run's manifest recorded).
    add_options(
        cancel,
        Settings,
        only=(
            "endpoint",
            "qps",
            "cancel_statuses",
            "iot_instance_id",
            "quota_store",
            "account",
            "quota_share",
        ),
    )
    cancel.add_argument(
        "--apply", action="store_true", help="really cancel (re-checks each task first)"
    )
    cancel.set_defaults(handler=_cancel_command)

    summary = commands.add_parser(
        "summary",
        help="print the summary of a finished run",
        description="Print the human summary of a finished run from its Parquet files. "
        "RUN_DIR is a run directory, or OUT or OUT/LATEST for the run LATEST names.",
        epilog="examples:\n"
        "  fleetaudit summary reports/run_date=2026-11-23/run_id=20261123T020000Z-a1b2c3\n"
        "  fleetaudit summary reports/            # the run reports/LATEST names\n"
        "  fleetaudit summary reports/LATEST",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    summary.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a run directory, OUT or OUT/LATEST"
    )
    summary.set_defaults(handler=_summary_command)

    diff = commands.add_parser(
        "diff",
        help="what changed between two runs",
        description="Compare two finished runs: findings new, resolved and persisting (keyed "
        "as changes.parquet keys them), module versions moved, devices joined or left.",
        epilog="example:\n  fleetaudit diff reports/run_date=2026-11-22/run_id=... "
        "reports/run_date=2026-11-23/run_id=...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("run_a", type=Path, metavar="RUN_A", help="the older run directory")
    diff.add_argument("run_b", type=Path, metavar="RUN_B", help="the newer run directory")
    diff.add_argument(
        "--show", type=int, default=20, metavar="N", help="rows listed per kind of change"
    )
    diff.set_defaults(handler=_diff_command)

    history = commands.add_parser(
        "history",
        help="trends over the published runs in OUT",
        description="One line per published run of a series, oldest first: devices by "
        "status, findings, stalled tasks, new and resolved findings, the gate, and each "
        "target's on-target share.",
        epilog="examples:\n  fleetaudit history reports/\n"
        "  fleetaudit history reports/ --series nightly",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument("out", type=Path, metavar="OUT", help="where runs are written")
    history.add_argument(
        "--series", metavar="NAME", help="which series (default: the series LATEST's run is in)"
    )
    history.set_defaults(handler=_history_command)

    report = commands.add_parser(
        "report",
        help="write a run's report.html again",
        description="Write report.html into a finished run directory (every run writes one; "
        "this redraws it, e.g. for a run published by an older fleetaudit). RUN_DIR may also "
        "be OUT or OUT/LATEST.",
        epilog="example:\n  fleetaudit report reports/LATEST",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a run directory, OUT or OUT/LATEST"
    )
    report.set_defaults(handler=_report_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args))
    except FleetauditError as error:
        print(f"fleetaudit: error: {error}", file=sys.stderr)
        return exit_code_for(error)
    except OSError as error:
        # A full disk or an unwritable OUT: what was committed stays, --resume continues.
        print(f"fleetaudit: error: {error}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print("fleetaudit: interrupted", file=sys.stderr)
        return exit_code_for(KeyboardInterrupt())


def _credentials() -> Credentials:
    # os.environ is read at call time, so a test's monkeypatched environment is seen.
    return credentials_from_env(os.environ)


def _run_command(args: argparse.Namespace) -> int:
    if args.plan:
        return _plan_command(args)
    from fleetaudit.runjob import run_from_args

    return run_from_args(args, _credentials)


def _plan_command(args: argparse.Namespace) -> int:
    from fleetaudit.config import settings_from
    from fleetaudit.filecheck import check_regular_file
    from fleetaudit.plan import plan_run

    settings = settings_from(args.job, args)
    assert settings.devices is not None  # settings_from() refuses a run without one
    check_regular_file(settings.devices)
    return anyio.run(plan_run, settings, _credentials(), sys.stdout)


def _add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    from fleetaudit.emulator.cli import add_arguments

    add_arguments(parser)


def _emulator_command(args: argparse.Namespace) -> int:
    from fleetaudit.emulator.cli import run

    return run(args)


def _cancel_command(args: argparse.Namespace) -> int:
    from fleetaudit.remediation.apply import cancel_command

    given = option_values(Settings, args)
    options = Settings(**given)
    credentials = _credentials() if args.apply else None
    return anyio.run(
        partial(
            cancel_command,
            args.run_dir,
            finding_types=args.finding or None,
            device_list=args.device_list,
            statuses=given.get("cancel_statuses"),
            endpoint=options.endpoint,
            iot_instance_id=options.iot_instance_id,
            apply=args.apply,
            credentials=credentials,
            out=sys.stdout,
            quotas=options.quotas_per_action(),
            pacing={
                name: given[name]
                for name in ("quota_store", "account", "quota_share")
                if name in given
            },
        )
    )


def _summary_command(args: argparse.Namespace) -> int:
    from fleetaudit.report.summary import find_run_dir, summarize_run

    print(summarize_run(find_run_dir(args.run_dir)))
    return 0


def _diff_command(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from fleetaudit.report.changes_text import format_diff
    from fleetaudit.report.compare import compare_in_parts, published_source
    from fleetaudit.report.runs import open_run

    older, newer = open_run(args.run_a), open_run(args.run_b)
    if older.run_id > newer.run_id:
        # Run ids start with the start time: given newer first, new and resolved would swap.
        print(f"note: {newer.run_id} is the older run; comparing it to {older.run_id}")
        older, newer = newer, older
    if older.series != newer.series:
        print(f"note: the runs are of different series ({older.series} and {newer.series})")
    parts = compare_in_parts(published_source(newer), published_source(older))
    changes = pa.concat_tables(parts)
    print(format_diff(changes, older.run_id, newer.run_id, show=max(0, args.show)))
    return 0


def _history_command(args: argparse.Namespace) -> int:
    from fleetaudit.report.runs import history_of

    print(history_of(args.out, args.series, now_ms=round(time.time() * 1000)))
    return 0


def _report_command(args: argparse.Namespace) -> int:
    from fleetaudit.report.runs import out_of
    from fleetaudit.report.series import write_report
    from fleetaudit.report.summary import find_run_dir

    run_dir = find_run_dir(args.run_dir)
    print(write_report(run_dir, out_of(run_dir)))
    return 0
