from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from fastprof import FastprofMiddleware
from fastprof.detectors.pool_exhaustion import PoolExhaustionDetector
from fastprof.queries import pools
from tests.conftest import require_service


async def hit(mw: Any, path: str, count: int) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await asyncio.gather(*[client.get(path) for _ in range(count)])


def sqlite_app(tmp_path: Path, size: int, *, overflow: int = 0, timeout: float = 30) -> FastAPI:
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    engine = create_engine(url, pool_size=size, max_overflow=overflow, pool_timeout=timeout)
    aengine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", pool_size=size, max_overflow=overflow
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()
        await aengine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/sync")
    def sync_hold() -> dict[str, int]:
        with engine.connect() as conn:  # the checkout that waits
            conn.execute(text("SELECT 1"))
            time.sleep(0.05)  # holds the connection
        return {}

    @app.get("/async")
    async def async_hold() -> dict[str, int]:
        async with aengine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.05)
        return {}

    return app


async def run(app: FastAPI, path: str, count: int, **detector: Any) -> FastprofMiddleware:
    mw = FastprofMiddleware(app, detect=[PoolExhaustionDetector(**detector)])
    try:
        async with app.router.lifespan_context(app):
            responses = await hit(mw, path, count)
        assert all(r.status_code == 200 for r in responses), responses
    finally:
        mw.close()
    return mw


@pytest.mark.parametrize("path", ["/sync", "/async"])
async def test_a_full_sqlalchemy_pool_is_reported(tmp_path: Path, path: str) -> None:
    mw = await run(sqlite_app(tmp_path, 1), path, 6)
    findings = [f for f in mw.store.findings if f.kind == "pool_exhaustion"]
    assert len(findings) >= 3  # the later requests waited for the first ones
    worst = max(findings, key=lambda f: f.evidence["wait_ms"])
    assert worst.evidence["wait_ms"] >= 80
    assert worst.evidence["pool_size"] == 1 and worst.evidence["max_overflow"] == 0
    assert worst.evidence["in_use_at_wait"] == 1 and worst.evidence["peak_in_use"] == 1
    assert "QueuePool" in worst.evidence["pool"]
    assert worst.route == f"GET {path}"
    assert worst.location is not None
    assert worst.location.function in ("sync_hold", "async_hold")
    holder = worst.evidence["holders"][0]
    assert holder["route"] == f"GET {path}" and holder["median_hold_ms"] >= 45
    assert "pool_size=" in worst.advice and "median" in worst.advice


async def test_a_pool_with_room_reports_nothing(tmp_path: Path) -> None:
    mw = await run(sqlite_app(tmp_path, 8), "/sync", 6)
    assert not [f for f in mw.store.findings if f.kind == "pool_exhaustion"]


async def test_overflow_counts_as_room(tmp_path: Path) -> None:
    mw = await run(sqlite_app(tmp_path, 1, overflow=8), "/async", 6)
    assert not [f for f in mw.store.findings if f.kind == "pool_exhaustion"]


async def test_a_checkout_that_times_out_is_high_severity(tmp_path: Path) -> None:
    app = sqlite_app(tmp_path, 1, timeout=0.01)
    mw = FastprofMiddleware(app, detect=[PoolExhaustionDetector(threshold_ms=1000)])
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=mw, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                responses = await asyncio.gather(*[client.get("/sync") for _ in range(3)])
    finally:
        mw.close()
    assert sorted(r.status_code for r in responses)[-1] == 500  # the app's own error
    timed_out = [f for f in mw.store.findings if f.evidence.get("timed_out")]
    assert timed_out and timed_out[0].severity == "high"
    assert timed_out[0].title.startswith("Timed out")


async def test_short_waits_stay_under_the_threshold(tmp_path: Path) -> None:
    mw = await run(sqlite_app(tmp_path, 1), "/sync", 4, threshold_ms=5000)
    assert not mw.store.findings


def test_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold_ms=0 is not valid"):
        PoolExhaustionDetector(threshold_ms=0)


def test_nothing_is_timed_once_stopped(tmp_path: Path) -> None:
    detector = PoolExhaustionDetector()
    detector.start()
    assert pools.watching == 1
    detector.stop()
    detector.stop()
    assert pools.watching == 0


async def test_asyncpg_pool_waits_are_reported() -> None:
    require_service("postgres", "127.0.0.1", 5432)
    import asyncpg

    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder["pool"] = await asyncpg.create_pool(
            "postgresql://postgres@127.0.0.1:5432/test", min_size=1, max_size=2
        )
        yield
        await holder["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/pg")
    async def pg_hold() -> dict[str, int]:
        async with holder["pool"].acquire() as conn:
            await conn.fetchval("SELECT pg_sleep(0.05)")
        return {}

    mw = await run(app, "/pg", 8)
    findings = [f for f in mw.store.findings if f.kind == "pool_exhaustion"]
    assert len(findings) >= 3
    worst = max(findings, key=lambda f: f.evidence["wait_ms"])
    assert worst.evidence["pool"].startswith("asyncpg Pool")
    assert worst.evidence["pool_size"] == 2 and worst.evidence["in_use_at_wait"] == 2
    assert worst.location is not None and worst.location.function == "pg_hold"
    assert worst.evidence["holders"][0]["median_hold_ms"] >= 45
    assert "max_size=" in worst.advice


async def test_a_failure_inside_the_wait_timing_never_fails_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(pool: Any, describe: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(pools, "info", broken)
    mw = await run(sqlite_app(tmp_path, 1), "/async", 4)  # every response is checked: 200
    assert not mw.store.findings
    assert "query capture failed" in caplog.text
