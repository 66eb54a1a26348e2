"""The shared schedule in Redis, for processes of one account on several hosts (extra `redis`).

Each booking is one Lua script run atomically on the server, on the server's clock (so
hosts whose clocks disagree still share one schedule): the same rule as `schedule.book`.
Its key expires a few seconds after the last slot it booked, so nothing outlives a run.

Why a script and not a rate-limiting library: `limits` and `pyrate-limiter` answer "may I
call now?" against a window; a caller told "no" polls, and callers told "yes" start
together in a burst inside the window, which a platform counting per 100 ms throttles. A
schedule that returns *when* to start spaces every process's calls evenly; the script
that keeps it is six lines.
"""

from __future__ import annotations

from typing import Any

try:
    import redis.asyncio as redis_asyncio
    from redis.exceptions import RedisError
except ImportError as missing:  # pragma: no cover - the message is the behaviour
    raise ImportError(
        "quota_store redis://... needs the redis extra: pip install 'fleetaudit[redis]'"
    ) from missing

from fleetaudit.api.schedule import STORE_TIMEOUT_S, horizon
from fleetaudit.setting_kinds import shown_store

# KEYS[1]: the (account, action) schedule; ARGV[1]: the interval, ARGV[2]: the horizon past
# which a next free moment is stale (schedule.book), in seconds. Returns the seconds until
# the booked slot, as text (a Lua number would come back as an integer).
_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free - now > tonumber(ARGV[2]) then next_free = now end
local start = math.max(now, next_free)
local booked_until = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', booked_until), 'PX',
    math.ceil((booked_until - now) * 1000) + 10000)
return string.format('%.6f', start - now)
"""


class StoreError(Exception):
    """A Redis failure, its message free of the URL's password."""


class RedisSchedule:
    """Slots shared by every process of the account on every host that reaches the server."""

    degraded = None

    def __init__(self, url: str, account: str) -> None:
        self.where = shown_store(url)
        self._prefix = f"fleetaudit:quota:{account}:"
        self._client: Any = redis_asyncio.from_url(
            url,
            socket_timeout=STORE_TIMEOUT_S,
            socket_connect_timeout=STORE_TIMEOUT_S,
            retry_on_timeout=False,
        )
        self._book: Any = self._client.register_script(_BOOK)

    async def reserve(self, action: str, interval: float) -> float:
        try:
            answer = await self._book(
                keys=[self._prefix + action], args=[repr(interval), repr(horizon(interval))]
            )
        except (RedisError, OSError) as error:
            # The kind of failure is enough (the store's place is said beside it), and an
            # error's text is never shown: it could hold the URL with its password.
            raise StoreError(type(error).__name__) from None
        return float(answer)

    async def aclose(self) -> None:
        await self._client.aclose()
