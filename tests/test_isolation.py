"""Concurrent requests must not see each other's frames, whatever the backend.

(py-spy is left out on purpose: it samples the whole process and cannot separate requests.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fastprof import FastprofMiddleware

BACKENDS = ["pyinstrument", "yappi", "continuous"]


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/sleepy")
    async def sleepy_endpoint() -> dict[str, str]:
        await asyncio.sleep(0.05)
        return {"kind": "sleepy"}

    @app.get("/busy")
    async def busy_endpoint() -> dict[str, str]:
        burn(0.04)
        return {"kind": "busy"}

    @app.get("/threaded")
    def threaded_endpoint() -> dict[str, str]:
        burn(0.03)
        return {"kind": "threaded"}

    return app


def options(backend: str) -> dict[str, Any]:
    if backend == "continuous":
        return {"backend": "continuous", "continuous_interval": 0.002, "slow_ms": 0}
    return {"backend": backend, "sample_rate": 1.0}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_concurrent_requests_keep_their_own_frames(backend: str) -> None:
    mw = FastprofMiddleware(build_app(), **options(backend))
    transport = httpx.ASGITransport(app=mw)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = await asyncio.gather(
                *[client.get("/sleepy" if i % 2 else "/busy") for i in range(20)]
            )
        assert [r.status_code for r in responses] == [200] * 20
        records = list(mw.store.profiles)
        assert len(records) == 20
        for record in records:
            functions = record.tree.functions()
            mine, theirs = (
                ("sleepy_endpoint", "busy_endpoint")
                if record.path == "/sleepy"
                else ("busy_endpoint", "sleepy_endpoint")
            )
            assert mine in functions, f"{backend}: {record.path} lacks {mine}"
            assert theirs not in functions, f"{backend}: {record.path} shows {theirs}"
            if record.path == "/sleepy":
                assert "burn" not in functions, f"{backend}: sleepy request shows burn()"
    finally:
        mw.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_def_endpoint_work_is_in_its_request(backend: str) -> None:
    mw = FastprofMiddleware(build_app(), **options(backend))
    transport = httpx.ASGITransport(app=mw)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await asyncio.gather(client.get("/threaded"), client.get("/sleepy"))
        by_path = {r.path: r for r in mw.store.profiles}
        threaded = by_path["/threaded"].tree
        assert "threaded_endpoint" in threaded.functions()
        (burn_node, *_) = threaded.find("burn")
        assert burn_node.total > 0
        assert "threaded_endpoint" not in by_path["/sleepy"].tree.functions()
    finally:
        mw.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_endpoint_behind_base_http_middleware_is_in_its_request(backend: str) -> None:
    """BaseHTTPMiddleware runs the endpoint in a task of its own (call_next)."""
    app = build_app()

    @app.middleware("http")
    async def passthrough(request: Any, call_next: Any) -> Any:
        return await call_next(request)

    mw = FastprofMiddleware(app, **options(backend))
    transport = httpx.ASGITransport(app=mw)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = await asyncio.gather(
                *[client.get("/sleepy" if i % 2 else "/busy") for i in range(6)]
            )
        assert [r.status_code for r in responses] == [200] * 6
        records = list(mw.store.profiles)
        assert len(records) == 6
        for record in records:
            functions = record.tree.functions()
            if record.path == "/busy":
                assert "burn" in functions, f"{backend}: /busy lacks burn()"
            else:
                assert "burn" not in functions, f"{backend}: /sleepy shows burn()"
    finally:
        mw.close()
