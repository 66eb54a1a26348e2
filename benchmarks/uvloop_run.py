"""`fleetaudit` on uvloop's event loop, to measure what uvloop is worth (benchmarks only).

anyio's asyncio backend builds its loop through the current event loop policy, so
installing uvloop's policy before the command line runs is enough.

    .venv/bin/python benchmarks/uvloop_run.py run --endpoint ... --devices ... --out ...
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from fleetaudit.cli import main

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.exit(main(sys.argv[1:]))
