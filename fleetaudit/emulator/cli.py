"""The `fleetaudit emulator` command: serve a synthetic fleet, or write its device list.

`--write-devices PATH` writes the CSV (product_key,device_name,iot_id) the demo audits and
exits, unless `--serve` is also given. Credentials come from FLEETAUDIT_ACCESS_KEY_ID and
FLEETAUDIT_ACCESS_KEY_SECRET; without them a fixed DEMO pair is used and printed (it is
not a secret). A real secret is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fleetaudit.credentials import KEY_ID_ENV, SECRET_ENV
from fleetaudit.emulator.facts import DEFAULT_QUOTAS
from fleetaudit.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from fleetaudit.emulator.synthetic import SyntheticFleet

DEMO_KEY_ID = "DEMO-fleetaudit-key"
DEMO_SECRET = "DEMO-fleetaudit-secret-not-secret"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator command's options."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8686)
    parser.add_argument("--devices", type=int, default=2000, help="synthetic fleet size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--casing", choices=("tuya", "alibaba"), default="tuya")
    parser.add_argument(
        "--quota", action="append", default=[], metavar="ACTION=N", help="calls/s for one action"
    )
    parser.add_argument("--qps", type=float, help="calls/s for every action (0: unlimited)")
    parser.add_argument("--throttle-status", type=int, choices=(400, 429), default=400)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per response")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--garbage-rate", type=float, default=0.0)
    parser.add_argument(
        "--cancel-in-progress", action="store_true", help="let Cancel also cancel IN_PROGRESS"
    )
    parser.add_argument(
        "--iot-instance-id", metavar="ID", help="require this IotInstanceId on every call"
    )
    parser.add_argument("--write-devices", type=Path, metavar="PATH", help="write the device CSV")
    parser.add_argument("--serve", action="store_true", help="serve even with --write-devices")


def quotas_from(args: argparse.Namespace) -> dict[str, float]:
    """Per-action rates from --qps and --quota ACTION=N (the latter wins)."""
    quotas: dict[str, float] = {}
    if args.qps is not None:
        quotas = dict.fromkeys(DEFAULT_QUOTAS, float(args.qps))
    for item in args.quota:
        action, _, value = item.partition("=")
        if action not in DEFAULT_QUOTAS:
            raise UsageError(f"--quota {item!r}: unknown action {action!r}")
        try:
            quotas[action] = float(value)
        except ValueError:
            raise UsageError(f"--quota {item!r}: N must be a number") from None
    return quotas


def write_devices(fleet: SyntheticFleet, path: Path) -> None:
    """The device list CSV the demo audits (about 1% of its rows do not exist)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("product_key", "device_name", "iot_id"))
        writer.writerows(fleet.iter_device_list())


def run(args: argparse.Namespace) -> int:
    """Run the emulator command."""
    # Imported here: every fleetaudit command builds this command's arguments, and only
    # this one needs the server.
    from fleetaudit.emulator.app import DEFAULT_CANCELLABLE, create_app
    from fleetaudit.emulator.faults import FaultPlan
    from fleetaudit.emulator.server import serve
    from fleetaudit.emulator.synthetic import SyntheticFleet

    fleet = SyntheticFleet(args.devices, seed=args.seed, now_ms=int(time.time() * 1000))
    if args.write_devices is not None:
        write_devices(fleet, args.write_devices)
        print(f"wrote {args.devices} devices to {args.write_devices}")
        if not args.serve:
            return EXIT_OK
    key_id = os.environ.get(KEY_ID_ENV)
    secret = os.environ.get(SECRET_ENV)
    if not key_id or not secret:
        key_id, secret = DEMO_KEY_ID, DEMO_SECRET
        print(f"DEMO credentials (not secret): key id {key_id}, secret {secret}")
    else:
        print(f"credentials from the environment: key id {key_id}")
    try:
        faults = FaultPlan(
            seed=args.seed,
            error_rate=args.error_rate,
            drop_rate=args.drop_rate,
            garbage_rate=args.garbage_rate,
            latency=args.latency,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    cancellable = DEFAULT_CANCELLABLE
    if args.cancel_in_progress:
        cancellable = cancellable | {"IN_PROGRESS"}
    app = create_app(
        fleet,
        credentials={key_id: secret},
        faults=faults,
        quotas=quotas_from(args),
        throttle_status=args.throttle_status,
        casing=args.casing,
        cancellable=cancellable,
        iot_instance_id=args.iot_instance_id,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app, args.host, args.port))
    return EXIT_OK
