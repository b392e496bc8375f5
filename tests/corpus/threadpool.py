"""threadpool_saturation: ``def`` work queueing for AnyIO's worker threads.

The lifespan shrinks AnyIO's default thread limiter to 3 tokens (this module's loop only), so
that a crowd of eight requests is enough to fill it. Positives: a ``def`` endpoint that holds
its thread for 40 ms, ``run_in_threadpool`` from an ``async def`` endpoint, a sync dependency.
Negatives: the same ``def`` endpoint one request at a time, an ``async def`` endpoint that
awaits instead of holding a thread, a ``def`` endpoint too quick to make anyone wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from tests.corpus import Case

TOKENS = 3
HOLD = 0.04


def slow_work() -> int:  # expect: threadpool_saturation
    time.sleep(HOLD)
    return 1


def slow_dependency() -> int:  # expect: threadpool_saturation
    time.sleep(HOLD)
    return 1


def build() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        before = limiter.total_tokens
        limiter.total_tokens = TOKENS
        try:
            yield
        finally:
            limiter.total_tokens = before

    app = FastAPI(lifespan=lifespan)

    @app.get("/threads/def")  # expect: threadpool_saturation
    def def_endpoint() -> dict[str, int]:
        time.sleep(HOLD)
        return {}

    @app.get("/threads/run-in-threadpool")
    async def offloaded() -> dict[str, int]:
        return {"n": await run_in_threadpool(slow_work)}

    @app.get("/threads/dependency")
    async def with_dependency(n: Annotated[int, Depends(slow_dependency)]) -> dict[str, int]:
        return {"n": n}

    @app.get("/threads/def-alone")
    def def_alone() -> dict[str, int]:
        time.sleep(HOLD)
        return {}

    @app.get("/threads/awaits")
    async def awaits() -> dict[str, int]:
        await asyncio.sleep(HOLD)
        return {}

    @app.get("/threads/quick")
    def quick() -> dict[str, int]:
        return {}

    return app


CASES = [
    Case("/threads/def", frozenset({"threadpool_saturation"}), repeat=8, concurrency=8),
    Case(
        "/threads/run-in-threadpool",
        frozenset({"threadpool_saturation"}),
        repeat=8,
        concurrency=8,
    ),
    Case("/threads/dependency", frozenset({"threadpool_saturation"}), repeat=8, concurrency=8),
    Case("/threads/def-alone", repeat=3),
    Case("/threads/awaits", repeat=8, concurrency=8),
    Case("/threads/quick", repeat=8, concurrency=8),
]
