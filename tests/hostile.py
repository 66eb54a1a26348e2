"""A hostile platform for tests: the emulator's own answers, damaged on purpose, on loopback.

`hostile_url(respond)` serves an aiohttp app on loopback (`serve_in_thread`) whose every
answer is `await respond(params)`; it yields the base URL and the parameters of every
request it received, in order. It checks no signature: the damage is the point.

- `honest(fleet, params)`: the emulator's own answer body to a request (its actions, run
  directly), for a `respond` that damages a real answer rather than inventing one;
- `answer(body, status=200, headers=None)`: a JSON response;
- `throttled(headers=None)`: the gateway's `Throttling.User` refusal (HTTP 400);
- `hostile_client(url, **settings)`: a client of the hostile server with fast quotas.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import orjson
from aiohttp import web

from fleetaudit.api.client import ACTIONS, ClientSettings, OtaClient, open_client
from fleetaudit.emulator import actions
from fleetaudit.emulator.app import DEFAULT_CANCELLABLE
from fleetaudit.emulator.fleet import Fleet
from fleetaudit.emulator.server import serve_in_thread
from fleetaudit.models import Credentials

from helpers import FIXED_NOW, TEST_KEY_ID, TEST_SECRET, FakeClock, RecordingSleep

Respond = Callable[[dict[str, str]], Awaitable[web.Response]]
FAST = dict.fromkeys(ACTIONS, 1000.0)  # pacing out of the way where not tested


def honest(fleet: Fleet, params: Mapping[str, str]) -> dict[str, Any]:
    """The emulator's answer body (lowerCamel) to one request's parameters."""
    context = actions.Context(fleet, DEFAULT_CANCELLABLE, int(FIXED_NOW * 1000))
    return actions.run(params["Action"], context, "hostile-request", params)


def answer(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer with `status` and `headers`."""
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def throttled(headers: Mapping[str, str] | None = None) -> web.Response:
    """The gateway's flow-control refusal."""
    body = {"RequestId": "hostile-request", "Code": "Throttling.User", "Message": "flow control"}
    return answer(body, status=400, headers=headers)


@contextlib.contextmanager
def hostile_url(respond: Respond) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Serve `respond` on loopback; yields (base URL, parameters of every request so far)."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        params = dict(request.query)
        seen.append(params)
        return await respond(params)

    app = web.Application()
    app.router.add_route("*", "/", handle)
    with serve_in_thread(app) as url:
        yield url, seen


@contextlib.asynccontextmanager
async def hostile_client(
    url: str,
    *,
    sleep: Callable[[float], Awaitable[object]] | None = None,
    clock: Callable[[], float] | None = None,
    **settings: Any,
) -> AsyncIterator[OtaClient]:
    """A client of `url` with fast quotas, a seeded rng and (by default) a recording sleep."""
    settings.setdefault("quotas", FAST)
    async with open_client(
        ClientSettings(endpoint=url, **settings),
        Credentials(TEST_KEY_ID, TEST_SECRET),
        sleep=sleep or RecordingSleep(),
        rng=random.Random(1),
        clock=clock or FakeClock(),
    ) as client:
        yield client
