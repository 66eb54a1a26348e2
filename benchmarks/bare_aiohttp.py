"""The floor for engine overhead: a bare aiohttp loop making fleetaudit's per-device requests.

Per device, the same two signed requests fleetaudit sends (every page of module versions,
then the unfinished tasks), `--concurrency` devices at a time over one keep-alive session,
each answer decoded with orjson and dropped. No pacing, retries, join, findings or
Parquet: what is left is signing, HTTP and JSON. Prints one JSON line of counts.

    .venv/bin/python benchmarks/bare_aiohttp.py --endpoint http://127.0.0.1:8686/ \\
        --devices fleet.csv [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from fleetaudit.api.signing import canonical_query, percent_encode, sign

UNFINISHED = ("CONFIRM", "QUEUED", "NOTIFIED", "IN_PROGRESS")
PAGE_SIZE = 200


class Caller:
    """Signs and sends one request at a time over a shared session."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, key: str, secret: str):
        self.session = session
        self.endpoint = endpoint.rstrip("/") + "/"
        self.key = key
        self.secret = secret
        self.attempts = 0

    async def call(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        signed = {
            "Action": action,
            "Version": "2018-01-20",
            "Format": "JSON",
            "AccessKeyId": self.key,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": uuid.uuid4().hex,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **params,
        }
        signature = sign("POST", signed, self.secret)
        query = f"{canonical_query(signed)}&Signature={percent_encode(signature)}"
        self.attempts += 1
        async with self.session.post(URL(f"{self.endpoint}?{query}", encoded=True)) as response:
            body: dict[str, Any] = orjson.loads(await response.read())
            return body


def items(body: dict[str, Any], name: str) -> list[Any]:
    data = body.get("data") or body.get("Data") or {}
    return list(data.get(name[0].lower() + name[1:]) or data.get(name) or [])


async def audit(caller: Caller, row: dict[str, str]) -> int:
    who = (
        {"IotId": row["iot_id"]}
        if row.get("iot_id")
        else {"ProductKey": row["product_key"], "DeviceName": row["device_name"]}
    )
    found = 0
    page = 1
    while True:
        params = {**who, "CurrentPage": str(page), "PageSize": str(PAGE_SIZE)}
        body = await caller.call("ListOTAModuleVersionsByDevice", params)
        modules = items(body, "SimpleOTAModuleInfo")
        found += len(modules)
        total = int(body.get("total") or body.get("Total") or 0)
        if not modules or page * PAGE_SIZE >= total:
            break
        page += 1
    statuses = {f"TaskStatusList.{i}": s for i, s in enumerate(UNFINISHED, 1)}
    body = await caller.call("ListOTAUnfinishedTaskByDevice", {**who, **statuses})
    return found + len(items(body, "SimpleOTATaskInfo"))


async def main(endpoint: str, devices: Path, concurrency: int) -> None:
    with devices.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)
    connector = aiohttp.TCPConnector(limit=concurrency)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        caller = Caller(
            session,
            endpoint,
            os.environ["FLEETAUDIT_ACCESS_KEY_ID"],
            os.environ["FLEETAUDIT_ACCESS_KEY_SECRET"],
        )

        async def worker() -> None:
            while not queue.empty():
                await audit(caller, queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    print(json.dumps({"devices": len(rows), "wall_s": wall, "attempts": caller.attempts}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--devices", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(args.endpoint, args.devices, args.concurrency))
