"""Serving the emulator app: in a background thread (tests, demo) or in the foreground (CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from aiohttp import web


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    # No access log: at thousands of requests per second it would cost more than the answers.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, int(bound_port)


@contextlib.contextmanager
def serve_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on its own event loop in a daemon thread; yields `http://HOST:PORT/`.

    Usable from sync and async tests alike, since the caller's loop (if any) is untouched.
    """
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[tuple[web.AppRunner, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            servers.append(loop.run_until_complete(_start(app, host, port)))
        except BaseException as error:  # handed to the caller's thread below
            errors.append(error)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fleetaudit-emulator", daemon=True)
    thread.start()
    started.wait()
    if errors:
        thread.join()
        loop.close()
        raise RuntimeError(f"emulator failed to start on {host}:{port}") from errors[0]
    runner, bound_port = servers[0]
    try:
        yield f"http://{host}:{bound_port}/"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve `app` until cancelled (the CLI runs this under `asyncio.run`)."""
    runner, bound_port = await _start(app, host, port)
    try:
        print(f"emulator listening on http://{host}:{bound_port}/", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
