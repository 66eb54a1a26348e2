"""The signed async client of the platform's OTA API: the only module that imports aiohttp.

It owns the HTTP session (keep-alive, connection limit, timeouts), signs every attempt
afresh, paces each action within its quota, retries transient failures with backoff and
turns every aiohttp/asyncio error into fleetaudit's own at one boundary (`_send`). What
requests mean and what answers say is protocol.py's business; this module moves bytes.

Outcomes of a call: the parsed value; `AuthError` (abort the run: nothing is retried);
`CallFailed` whose `.failure` is the errors-table row (not retryable, or retries spent).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import anyio
from yarl import URL

from fleetaudit.api import job_listings, protocol, responses
from fleetaudit.api.pacing import RateBudget
from fleetaudit.api.protocol import ACTIONS, DEFAULT_QUOTAS
from fleetaudit.api.retry import RetryPolicy, backoff_delay
from fleetaudit.api.schedule import Schedule, account_name, open_schedule
from fleetaudit.api.signing import signed_query
from fleetaudit.api.stats import ActionStats, ApiStats
from fleetaudit.errors import ApiError, AuthError, CallFailed, TransientError
from fleetaudit.models import (
    CallFailure,
    Credentials,
    Device,
    Firmware,
    Job,
    ModuleVersion,
    Task,
)
from fleetaudit.terms import UNFINISHED_STATUSES, Action

__all__ = [
    "ACTIONS",
    "DEFAULT_QUOTAS",
    "ClientSettings",
    "OtaClient",
    "RetryPolicy",
    "open_client",
]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]
T = TypeVar("T")


@dataclass(frozen=True)
class ClientSettings:
    """Where and how to call the platform. No secrets here: credentials travel apart."""

    endpoint: str
    quotas: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    concurrency: int = 64  # calls in flight at most, and the connection limit
    connect_timeout: float = 10.0
    request_timeout: float = 30.0  # one attempt, connect included
    method: Literal["POST", "GET"] = "POST"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    iot_instance_id: str | None = None
    # The shared quota (schedule.py): where slots are booked (None: the state directory;
    # "off": this process alone), whose quota it is, and how many slots this process may
    # hold ahead (its weight against the account's other processes).
    quota_store: str | None = None
    account: str | None = None
    quota_share: int = 1

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.method not in ("POST", "GET"):
            raise ValueError("method must be POST or GET")
        if any(rate <= 0 for rate in self.quotas.values()):
            raise ValueError("every quota must be a positive number of calls per second")
        if self.quota_share < 1:
            raise ValueError("quota_share must be at least 1")


@dataclass(frozen=True, slots=True)
class _Subject:
    """The parameters that identify a call in the errors table."""

    product_key: str | None = None
    device_name: str | None = None
    firmware_id: str | None = None
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    """One HTTP exchange, before protocol.py says what it means."""

    status: int
    body: bytes
    retry_after: float | None


@asynccontextmanager
async def open_client(
    settings: ClientSettings,
    credentials: Credentials,
    *,
    sleep: Sleep = anyio.sleep,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[OtaClient]:
    """An OtaClient over one keep-alive session, closed on exit.

    `sleep` waits between retries and `rng` draws their jitter; `clock` (epoch seconds)
    stamps requests. Tests pass a recording sleep and a seeded rng so nothing waits.
    """
    timeout = aiohttp.ClientTimeout(
        total=settings.request_timeout, sock_connect=settings.connect_timeout
    )
    connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=0)
    account = settings.account or account_name(settings.endpoint, credentials.access_key_id)
    schedule = open_schedule(settings.quota_store, account)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, raise_for_status=False
        ) as session:
            client = OtaClient(
                session, settings, credentials, sleep, rng or random.Random(), clock, schedule
            )
            try:
                yield client
            finally:
                client.stats.pacing = {
                    "store": schedule.where,
                    "account": account,
                    "share": settings.quota_share,
                    "degraded": schedule.degraded,
                }
    finally:
        with anyio.CancelScope(shield=True):
            await schedule.aclose()


class OtaClient:
    """Typed calls for the OTA actions; each returns parsed values, every page read."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ClientSettings,
        credentials: Credentials,
        sleep: Sleep,
        rng: random.Random,
        clock: Callable[[], float],
        schedule: Schedule | None = None,
    ) -> None:
        self.stats = ApiStats(ACTIONS)
        self._session = session
        self._settings = settings
        self._credentials = credentials
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        # An action left out of `quotas` keeps its documented default.
        quotas = {**DEFAULT_QUOTAS, **settings.quotas}
        self._budget = RateBudget(
            quotas, schedule=schedule, share=settings.quota_share, sleep=sleep
        )
        for action, _quota in quotas.items():
            self.stats.action(action).quota = self._budget[action].quota
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._base_url = str(URL(settings.endpoint).with_query(None))
        # Once the platform refuses our identity, every later call fails the same way
        # without being sent: the run is over, and hammering a bad key helps nobody.
        self._auth_error: AuthError | None = None
        self._hints_cut: set[Action] = set()

    def __repr__(self) -> str:
        return f"OtaClient(endpoint={self._settings.endpoint!r}, credentials={self._credentials!r})"

    # --- the five actions ---------------------------------------------------------------

    async def list_module_versions(self, device: Device) -> list[ModuleVersion]:
        """Every module version the device reports (all pages of 200)."""
        subject = _Subject(product_key=device.product_key, device_name=device.device_name)
        return await self._listing(
            Action.LIST_MODULE_VERSIONS,
            lambda page: protocol.module_versions_params(device, page, protocol.MODULE_PAGE_SIZE),
            responses.module_listing(device, protocol.MODULE_PAGE_SIZE),
            subject,
        )

    async def list_unfinished_tasks(
        self,
        device: Device,
        statuses: Sequence[str] = UNFINISHED_STATUSES,
        module_name: str | None = None,
    ) -> list[Task]:
        """The device's tasks in `statuses` (every unfinished one by default), one call."""
        subject = _Subject(product_key=device.product_key, device_name=device.device_name)
        params = protocol.unfinished_tasks_params(device, statuses, module_name)
        return await self._call(
            Action.LIST_UNFINISHED_TASKS,
            params,
            subject,
            lambda envelope: responses.parse_tasks(envelope, device),
        )

    async def query_firmware(self, firmware_id: str) -> Firmware:
        """One firmware package; its URL comes back without the presigned query string."""
        return await self._call(
            Action.QUERY_FIRMWARE,
            protocol.firmware_params(firmware_id),
            _Subject(firmware_id=firmware_id),
            lambda envelope: responses.parse_firmware(envelope, firmware_id),
        )

    async def list_jobs_by_device(
        self, product_key: str, device_name: str, firmware_id: str
    ) -> list[Job]:
        """Every job of a firmware that concerns the device (all pages of 100)."""
        return await self._listing(
            Action.LIST_JOBS,
            lambda page: protocol.jobs_params(
                product_key, device_name, firmware_id, page, protocol.JOB_PAGE_SIZE
            ),
            responses.job_listing(product_key, firmware_id, protocol.JOB_PAGE_SIZE),
            _Subject(product_key, device_name, firmware_id),
        )

    async def cancel_tasks(
        self,
        product_key: str,
        firmware_id: str,
        device_names: Sequence[str],
        job_id: str | None = None,
    ) -> str:
        """Cancel the devices' unfinished tasks of a firmware (at most 200); the request id."""
        params = protocol.cancel_params(product_key, firmware_id, device_names, job_id)
        device_name = device_names[0] if len(device_names) == 1 else None
        subject = _Subject(product_key, device_name, firmware_id, job_id)
        return await self._call(Action.CANCEL_TASKS, params, subject, responses.request_id_of)

    # --- the sweep's listings (SWEEP.md) ------------------------------------------------

    async def list_firmware(self, product_key: str | None = None) -> list[Firmware]:
        """Every firmware of a product (of the account without one), all pages of 100."""
        size = protocol.FIRMWARE_PAGE_SIZE
        return await self._listing(
            Action.LIST_FIRMWARE,
            lambda page: protocol.firmware_list_params(product_key, page, size),
            job_listings.firmware_listing(product_key, size),
            _Subject(product_key=product_key),
        )

    async def list_jobs_by_firmware(self, firmware: Firmware) -> list[Job]:
        """Every job of a firmware, of any status (all pages of 200)."""
        size, firmware_id = protocol.FIRMWARE_JOB_PAGE_SIZE, firmware.firmware_id
        return await self._listing(
            Action.LIST_JOBS_BY_FIRMWARE,
            lambda page: protocol.firmware_jobs_params(firmware_id, page, size),
            job_listings.firmware_job_listing(firmware, size),
            _Subject(product_key=firmware.product_key, firmware_id=firmware_id),
        )

    async def list_job_tasks(
        self,
        job: Job,
        status: str | None,
        *,
        module_name: str | None = None,
        device_names: Sequence[str] = (),
    ) -> list[Task]:
        """A job's tasks in one status (every status: None), all pages of 100.

        Raises `responses.WindowExceeded` when the listing holds more than the 100,000 tasks
        its window shows (name at most 50 `device_names` to narrow it).
        """
        size = protocol.TASK_PAGE_SIZE
        subject = _Subject(job.product_key, None, job.firmware_id, job.job_id)
        return await self._listing(
            Action.LIST_TASKS_BY_JOB,
            lambda page: protocol.job_tasks_params(job.job_id, status, page, size, device_names),
            job_listings.job_task_listing(job, module_name, status, size, protocol.TASK_WINDOW),
            subject,
        )

    async def list_job_tasks_of_devices(
        self, job: Job, status: str | None, device_names: Sequence[str], module_name: str | None
    ) -> list[Task]:
        """A job's tasks of these devices: one listing per 50 names (DeviceNames.N)."""
        names = list(dict.fromkeys(device_names))
        step = protocol.MAX_TASK_DEVICE_NAMES
        tasks: list[Task] = []
        for start in range(0, len(names), step):
            batch = names[start : start + step]
            tasks += await self.list_job_tasks(
                job, status, module_name=module_name, device_names=batch
            )
        return tasks

    # --- paging, retries, pacing ----------------------------------------------------------

    async def _listing(
        self,
        action: Action,
        params_for_page: Callable[[int], dict[str, str]],
        listing: responses.Listing[T],
        subject: _Subject,
    ) -> list[T]:
        """Every page of a listing, each checked against the pages before it."""
        while True:
            page = await self._call(action, params_for_page(listing.page), subject, listing.read)
            if not listing.accept(page):
                return listing.items

    async def _call(
        self,
        action: Action,
        params: Mapping[str, str],
        subject: _Subject,
        parse: Callable[[dict[str, Any]], T],
    ) -> T:
        """One logical call: paced, retried on transient errors, its outcome counted.

        Errors use up `retry_attempts`; throttled answers do not: they are bounded by the
        call's time (`RetryPolicy.timeout`), since a storm is measured in seconds.
        """
        if self._auth_error is not None:
            raise AuthError(self._auth_error.code, self._auth_error.message)
        stats = self.stats.action(action)
        stats.calls += 1
        budget = self._budget[action]
        policy = self._settings.retry
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        attempt = errors = 0
        last: TransientError | None = None
        while True:
            # Pace first, then take a slot: a call waiting for its action's pace holds no
            # slot that a call of another action could use.
            await budget.acquire(stats)
            # The deadline starts at the first send, not while queued behind the pace.
            deadline = deadline if deadline is not None else loop.time() + policy.timeout
            time_left = deadline - loop.time()
            if last is not None and time_left <= 0:
                # The pace (slowed by throttling) used up the call's time: it failed by what
                # it was retrying, not by an attempt that was never sent.
                stats.failures += 1
                raise self._failed(action, subject, last, attempt) from None
            attempt += 1
            try:
                async with self._slots:
                    # Sent now, not when the pace let it go: a call that waited here for a
                    # slot after a slowdown was sent at the new rate.
                    sent_at = loop.time()
                    value = await self._attempt(action, params, stats, time_left, parse)
            except TransientError as error:
                if error.throttled:
                    stats.throttled += 1
                    budget.throttled(error.retry_after, sent_at)
                else:
                    errors += 1
                delay = backoff_delay(policy, attempt, self._rng, error.retry_after)
                if errors >= policy.attempts or loop.time() + delay >= deadline:
                    stats.failures += 1
                    cut_short = time_left < self._settings.request_timeout
                    if error.code == "Timeout" and cut_short and last is not None:
                        # The deadline, not the server, cut this attempt short.
                        error = last
                    raise self._failed(action, subject, error, attempt) from None
                last = error
                stats.retries += 1
                log.debug("%s attempt %d: %s; retrying in %.2fs", action, attempt, error, delay)
                await self._sleep(delay)
                continue
            except AuthError as error:
                stats.failures += 1
                self._auth_error = error
                raise
            except ApiError as error:
                stats.failures += 1
                raise self._failed(action, subject, error, attempt) from None
            budget.answered()
            return value

    async def _attempt(
        self,
        action: Action,
        params: Mapping[str, str],
        stats: ActionStats,
        time_left: float,
        parse: Callable[[dict[str, Any]], T],
    ) -> T:
        """Sign and send one attempt; the parsed answer or the error it stands for."""
        query = self._signed_query(action, params)
        loop = asyncio.get_running_loop()
        started = loop.time()
        stats.attempts += 1
        try:
            answer = await self._send(query, time_left)
        finally:
            stats.record_latency((loop.time() - started) * 1000.0)
        retry_after = self._capped_hint(action, answer.retry_after)
        envelope = responses.decode_response(answer.status, answer.body, retry_after=retry_after)
        return parse(envelope)

    def _capped_hint(self, action: Action, hint: float | None) -> float | None:
        """A server's retry-after hint, cut to `max_server_wait` (said once per action)."""
        cap = self._settings.retry.max_server_wait
        if hint is None or hint <= cap:
            return hint
        if action not in self._hints_cut:
            self._hints_cut.add(action)
            log.warning(
                "%s: the server asked to wait %.0f s; waiting %.0f s at most (max_server_wait)",
                action,
                hint,
                cap,
            )
        return cap

    def _signed_query(self, action: Action, params: Mapping[str, str]) -> str:
        """The query string of one attempt: a fresh nonce and timestamp, then the signature.

        The canonical query is built once and sent as it was signed (RFC 3986), so no
        library's idea of "safe" characters can change a byte between sign and send.
        """
        signed = protocol.common_params(
            action,
            self._credentials.access_key_id,
            nonce=os.urandom(16).hex(),
            timestamp=protocol.format_timestamp(self._clock()),
            iot_instance_id=self._settings.iot_instance_id,
        )
        signed.update(params)
        return signed_query(self._settings.method, signed, self._credentials.access_key_secret)

    async def _send(self, query: str, time_left: float) -> _Answer:
        """The HTTP exchange; every aiohttp/asyncio error becomes a TransientError here."""
        url = URL(f"{self._base_url}?{query}", encoded=True)
        timeout = aiohttp.ClientTimeout(
            total=max(0.001, min(self._settings.request_timeout, time_left)),
            sock_connect=self._settings.connect_timeout,
        )
        try:
            async with self._session.request(
                self._settings.method, url, timeout=timeout, allow_redirects=False
            ) as response:
                body = await response.read()
                retry_after = protocol.retry_after_seconds(
                    response.headers.get("x-acs-retry-after"),
                    response.headers.get("x-ratelimit-user-api"),
                )
                return _Answer(response.status, body, retry_after)
        except TimeoutError:
            raise TransientError("Timeout", "no answer in time") from None
        except (aiohttp.ClientError, OSError) as error:
            # The class name says enough; str(error) may quote the signed URL.
            raise TransientError("ConnectionError", type(error).__name__) from None

    def _failed(
        self, action: Action, subject: _Subject, error: ApiError, attempts: int
    ) -> CallFailed:
        """The CallFailed for an error that ends a call (its message is already redacted)."""
        log.info("%s failed after %d attempt(s): %s", action, attempts, error.code)
        return CallFailed(
            CallFailure(
                action=action,
                product_key=subject.product_key,
                device_name=subject.device_name,
                firmware_id=subject.firmware_id,
                job_id=subject.job_id,
                error_code=error.code,
                error_message=error.message,
                http_status=error.http_status,
                attempts=attempts,
                request_id=error.request_id,
            )
        )
