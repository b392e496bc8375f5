from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI

from fastprof import FastprofMiddleware
from fastprof.detectors.threadpool_saturation import ThreadpoolSaturationDetector


def build() -> FastAPI:
    app = FastAPI()

    @app.get("/sync")
    def sync_endpoint() -> dict[str, str]:
        time.sleep(0.05)
        return {}

    @app.get("/offload")
    async def offload() -> dict[str, str]:
        await asyncio.to_thread(time.sleep, 0.05)
        return {}

    return app


async def hit(mw: Any, path: str, count: int) -> None:
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        responses = await asyncio.gather(*[client.get(path) for _ in range(count)])
    assert all(r.status_code == 200 for r in responses)


async def test_requests_queueing_for_threads_are_reported() -> None:
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = 2  # a tiny pool: 8 requests of 50 ms must queue
    mw = FastprofMiddleware(build(), detect=["threadpool_saturation"])
    try:
        await hit(mw, "/sync", 8)
    finally:
        limiter.total_tokens = 40
        mw.close()
    findings = [f for f in mw.store.findings if f.kind == "threadpool_saturation"]
    assert len(findings) >= 4  # the later requests waited for the first ones
    worst = max(findings, key=lambda f: f.evidence["wait_ms"])
    assert worst.evidence["wait_ms"] >= 100
    assert worst.evidence["pool"] == "anyio" and worst.evidence["pool_size"] == 2
    assert worst.evidence["ahead_at_handover"] >= 2
    assert worst.route == "GET /sync"
    assert worst.location is not None and worst.location.function == "sync_endpoint"
    assert "total_tokens" in worst.advice


async def test_a_pool_with_room_reports_nothing() -> None:
    mw = FastprofMiddleware(build(), detect=["threadpool_saturation"])
    try:
        await hit(mw, "/sync", 4)
        await hit(mw, "/offload", 2)
    finally:
        mw.close()
    assert not [f for f in mw.store.findings if f.kind == "threadpool_saturation"]


def test_threshold_validation() -> None:
    with pytest.raises(ValueError, match="threshold_ms=0 is not valid"):
        ThreadpoolSaturationDetector(threshold_ms=0)
