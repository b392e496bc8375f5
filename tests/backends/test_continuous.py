from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from fastapi import FastAPI

from fastprof import FastprofMiddleware
from fastprof.backends.continuous import ContinuousBackend, Sampler


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def seventy() -> None:
    burn(0.0007)


def thirty() -> None:
    burn(0.0003)


async def test_per_route_tree_from_all_traffic_shows_the_70_30_split() -> None:
    app = FastAPI()

    @app.get("/split")
    async def split() -> dict[str, int]:
        seventy()
        thirty()
        return {}

    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.005)
    transport = httpx.ASGITransport(app=mw)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(2000):
                await client.get("/split")
        assert not mw.store.profiles  # fast and healthy: nothing kept one by one
        tree = mw.route_trees["GET /split"]
        (a,) = tree.find("seventy")
        (b,) = tree.find("thirty")
        share = a.total / (a.total + b.total)
        print(f"continuous: seventy={a.total:.3f}s thirty={b.total:.3f}s share={share:.3f}")
        assert a.samples + b.samples >= 100
        assert 0.60 <= share <= 0.80
    finally:
        mw.close()


async def test_suspended_requests_are_sampled_as_await() -> None:
    app = FastAPI()

    async def wait_for_db() -> None:
        await asyncio.sleep(0.1)

    @app.get("/wait")
    async def wait() -> dict[str, int]:
        await wait_for_db()
        return {}

    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.002, slow_ms=50)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            await client.get("/wait")
        (record,) = mw.store.profiles
        (node,) = record.tree.find("wait_for_db")
        assert node.total >= 0.05
        sleep = record.tree.find("sleep")[0]
        assert sleep.await_time >= 0.05 and sleep.self_time == 0
    finally:
        mw.close()


def test_sampler_thread_runs_only_while_needed() -> None:
    backend = ContinuousBackend(interval=0.001)
    capture = backend.start(None, is_async=False)
    assert backend.sampler.running
    burn(0.03)
    tree = capture.stop().get()
    assert "burn" in tree.functions()
    deadline = time.time() + 5
    while backend.sampler.running and time.time() < deadline:
        time.sleep(0.05)
    assert not backend.sampler.running
    assert not [t for t in threading.enumerate() if t.name == "fastprof-sampler"]


def test_one_sampler_serves_every_interval() -> None:
    coarse, fine = ContinuousBackend(interval=0.02), ContinuousBackend(interval=0.002)
    assert coarse.sampler is fine.sampler is Sampler.shared()
    a = coarse.start(None, is_async=False)
    assert coarse.sampler.interval == 0.02
    burn(0.01)
    b = fine.start(None, is_async=False)
    assert coarse.sampler.interval == 0.002  # ticks at the finest interval registered
    burn(0.2)
    fine_tree = b.stop().get()
    coarse_tree = a.stop().get()
    # each capture sampled at its own rate: ~100 samples vs ~10
    assert fine_tree.root.samples > 3 * coarse_tree.root.samples > 0
    assert coarse.sampler.interval == 0.02 or not coarse.sampler.running


async def test_work_in_tasks_the_request_spawns_is_sampled() -> None:
    from starlette.middleware.base import BaseHTTPMiddleware

    app = FastAPI()

    @app.middleware("http")
    async def timing_header(request, call_next):  # type: ignore[no-untyped-def]
        return await call_next(request)  # runs the endpoint in a task of its own

    @app.get("/cpu")
    async def cpu_heavy() -> dict[str, int]:
        burn(0.15)
        return {}

    assert BaseHTTPMiddleware  # the decorator above builds one
    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.002, slow_ms=100)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            await client.get("/cpu")
        (record,) = mw.store.profiles
        tree = record.tree
        (node,) = tree.find("cpu_heavy")
        assert node.total >= 0.05
        assert tree.find("<spawned task>")
        # the request's own task waited for that task meanwhile: not counted twice
        assert tree.total <= record.duration * 1.2
    finally:
        mw.close()


async def test_the_idle_timer_slows_down_and_wakes_for_a_new_capture() -> None:
    import signal

    from fastprof.backends.continuous import IDLE_DELAY

    backend = ContinuousBackend(interval=0.001)
    sampler = backend.sampler
    first = backend.start(None, is_async=True)
    if sampler._mode != "signal":
        pytest.skip("the signal timer is only used on the main thread")
    first.detach()
    # with nothing registered the timer ticks at IDLE_DELAY, not at 1 ms
    deadline = time.time() + 2
    while sampler._idle_since is None and time.time() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert sampler._idle_since is not None
    assert signal.getitimer(signal.ITIMER_REAL)[0] > 0.01
    assert IDLE_DELAY > 0.01
    # a capture arriving re-arms it at the interval at once
    second = backend.start(None, is_async=True)
    assert sampler._idle_since is None
    assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 0.0015 + 1e-9
    second.detach()
    sampler.stop()
