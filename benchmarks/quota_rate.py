"""Measure how much of a per-action quota the client uses, and how often it is throttled.

Serves the emulator on loopback with added latency and a quota per action, then drives the
two per-device actions flat out through the real client for DURATION seconds. Prints, per
action, answered calls per second as a % of the quota and the share of throttled requests.

    .venv/bin/python benchmarks/quota_rate.py --duration 60 --latency 0.15 --quota 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

from fleetaudit.api.client import ClientSettings, OtaClient, open_client
from fleetaudit.api.protocol import ACTIONS
from fleetaudit.emulator.app import STATS_KEY, create_app
from fleetaudit.emulator.faults import FaultPlan
from fleetaudit.emulator.server import serve_in_thread
from fleetaudit.emulator.synthetic import SyntheticFleet
from fleetaudit.errors import CallFailed
from fleetaudit.models import Credentials, Device
from fleetaudit.terms import Action


async def drive(client: OtaClient, action: str, devices: list[Device], stop_at: float) -> None:
    """Call `action` for device after device until `stop_at` (monotonic seconds)."""
    for device in itertools.cycle(devices):
        if time.monotonic() >= stop_at:
            return
        try:
            if action == Action.LIST_MODULE_VERSIONS:
                await client.list_module_versions(device)
            else:
                await client.list_unfinished_tasks(device)
        except CallFailed:
            pass  # a device the synthetic fleet leaves out: still one answered request


async def main(duration: float, latency: float, quota: float, workers: int) -> None:
    fleet = SyntheticFleet(2000, seed=1)
    devices = [Device(pk, name, iot_id or None) for pk, name, iot_id in fleet.iter_device_list()]
    quotas = dict.fromkeys(ACTIONS, quota)
    app = create_app(
        fleet,
        credentials={"bench": "benchsecret"},
        faults=FaultPlan(latency=latency),
        quotas=quotas,
    )
    actions = (Action.LIST_MODULE_VERSIONS, Action.LIST_UNFINISHED_TASKS)
    with serve_in_thread(app) as url:
        settings = ClientSettings(endpoint=url, quotas=quotas, concurrency=64)
        async with open_client(settings, Credentials("bench", "benchsecret")) as client:
            started = time.monotonic()
            stop_at = started + duration
            async with asyncio.TaskGroup() as group:
                for action, index in itertools.product(actions, range(workers)):
                    group.create_task(drive(client, action, devices[index::workers], stop_at))
            elapsed = time.monotonic() - started
            client_stats = client.stats.as_dict()
    stats = app[STATS_KEY]
    print(f"duration {elapsed:.1f} s, latency {latency * 1000:.0f} ms, quota {quota:g}/s/action")
    for action in actions:
        served, throttled = stats.served[action], stats.throttled[action]
        rate = served / elapsed
        print(
            f"{action}: {served} answered = {rate:.2f}/s = {100 * rate / quota:.1f}% of quota; "
            f"throttled {throttled}/{served + throttled} = "
            f"{100 * throttled / max(1, served + throttled):.2f}%; "
            f"p50 {client_stats[action]['latency_ms_p50']} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--quota", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8, help="concurrent callers per action")
    args = parser.parse_args()
    asyncio.run(main(args.duration, args.latency, args.quota, args.workers))
