"""What a user would write instead of fleetaudit: the official SDK in a 16-thread pool.

aliyun-python-sdk-core's AcsClient + CommonRequest, one task per device in a
ThreadPoolExecutor: every page of ListOTAModuleVersionsByDevice, then
ListOTAUnfinishedTaskByDevice with the four unfinished statuses. Throttling is met with a
sleep and a retry, a 5xx with a retry; rows are only collected in memory (no join, no
findings, no Parquet), which flatters the baseline. Prints one JSON line of counts.

    FLEETAUDIT_ACCESS_KEY_ID=... FLEETAUDIT_ACCESS_KEY_SECRET=... \\
        .venv/bin/python benchmarks/sdk_baseline.py --endpoint http://127.0.0.1:8686/ \\
        --devices fleet.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

PAGE_SIZE = 200
UNFINISHED = ("CONFIRM", "QUEUED", "NOTIFIED", "IN_PROGRESS")
MAX_ATTEMPTS = 10


class Counts:
    """Requests sent and how they went, shared by the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts = 0
        self.throttled = 0
        self.failed = 0
        self.modules = 0
        self.tasks = 0

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


def call(
    client: AcsClient,
    domain: str,
    action: str,
    params: dict[str, str],
    counts: Counts,
    throttle_sleep: float,
) -> dict[str, Any] | None:
    """One action, retried on throttling (after a sleep) and on server errors."""
    for _ in range(MAX_ATTEMPTS):
        request = CommonRequest(domain=domain, version="2018-01-20", action_name=action)
        request.set_protocol_type("http")
        request.set_method("POST")
        request.set_accept_format("JSON")
        for name, value in params.items():
            request.add_query_param(name, value)
        counts.add(attempts=1)
        try:
            body: dict[str, Any] = json.loads(client.do_action_with_exception(request))
            return body
        except ServerException as error:
            if error.get_error_code().startswith("Throttling"):
                counts.add(throttled=1)
                time.sleep(throttle_sleep)
                continue
            if error.get_http_status() >= 500:
                continue
            counts.add(failed=1)
            return None
        except ClientException:
            continue  # a connection error: try again
    counts.add(failed=1)
    return None


def items(body: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    """The list in Data (either casing), or nothing."""
    if not body:
        return []
    data = body.get("Data") or body.get("data") or {}
    found = data.get(name) or data.get(name[0].lower() + name[1:]) or []
    return list(found)


def audit_device(
    client: AcsClient, domain: str, row: dict[str, str], counts: Counts, throttle_sleep: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Module versions (every page) and unfinished tasks of one device."""
    who = (
        {"IotId": row["iot_id"]}
        if row.get("iot_id")
        else {"ProductKey": row["product_key"], "DeviceName": row["device_name"]}
    )
    modules: list[dict[str, Any]] = []
    page = 1
    while True:
        params = {**who, "CurrentPage": str(page), "PageSize": str(PAGE_SIZE)}
        body = call(client, domain, "ListOTAModuleVersionsByDevice", params, counts, throttle_sleep)
        found = items(body, "SimpleOTAModuleInfo")
        modules.extend(found)
        total = int((body or {}).get("Total") or (body or {}).get("total") or 0)
        if not found or page * PAGE_SIZE >= total:
            break
        page += 1
    task_params = {**who, **{f"TaskStatusList.{i}": s for i, s in enumerate(UNFINISHED, 1)}}
    body = call(
        client, domain, "ListOTAUnfinishedTaskByDevice", task_params, counts, throttle_sleep
    )
    tasks = items(body, "SimpleOTATaskInfo")
    counts.add(modules=len(modules), tasks=len(tasks))
    return modules, tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--devices", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--throttle-sleep", type=float, default=1.0, help="seconds")
    args = parser.parse_args()
    domain = args.endpoint.removeprefix("http://").rstrip("/")
    client = AcsClient(
        os.environ["FLEETAUDIT_ACCESS_KEY_ID"],
        os.environ["FLEETAUDIT_ACCESS_KEY_SECRET"],
        "cn-shanghai",
        auto_retry=False,
        timeout=30,
    )
    with args.devices.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts = Counts()
    started = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        results = list(
            pool.map(
                lambda row: audit_device(client, domain, row, counts, args.throttle_sleep), rows
            )
        )
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "devices": len(results),
                "wall_s": wall,
                "attempts": counts.attempts,
                "throttled": counts.throttled,
                "failed": counts.failed,
                "modules": counts.modules,
                "tasks": counts.tasks,
            }
        )
    )


if __name__ == "__main__":
    main()
