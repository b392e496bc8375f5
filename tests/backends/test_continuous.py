from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

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
    # each capture sampled at its own rate: ~100 samples vs ~10 on a quiet machine. Late ticks
    # (a busy machine: gaps of several ms) sample the coarse capture more often, rightly - each
    # weighs its gap - so the bound is loose: one CI run next to four valgrind processes got
    # 38 vs 15.
    assert fine_tree.root.samples > 2 * coarse_tree.root.samples > 0
    # and the fine one's samples, each weighing its gap, add up to the 0.2 s it covered however
    # late the ticks came (the rest of a tree's root is the unsampled time)
    sampled = fine_tree.root.total - fine_tree.root.await_time
    assert 0.1 < sampled < 0.4
    assert coarse.sampler.interval == 0.02 or not coarse.sampler.running


def test_a_tick_landing_in_stop_does_not_rearm_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SIGALRM handler runs on the main thread between any two bytecodes - also inside
    stop(), whose lock it re-enters: it must find the sampler stopped, not re-arm it."""
    import signal

    backend = ContinuousBackend(interval=0.005)
    sampler = backend.sampler
    capture = backend.start(None, is_async=False)
    assert sampler.mode == "signal"
    real_setitimer = signal.setitimer

    def setitimer(which: int, seconds: float, interval: float = 0.0) -> tuple[float, float]:
        before = real_setitimer(which, seconds, interval)
        if seconds == 0:  # a tick arrives just as stop() disarms
            sampler._on_signal(signal.SIGALRM, None)
        return before

    monkeypatch.setattr(signal, "setitimer", setitimer)
    capture.stop()
    sampler.stop()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert not sampler.running


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


# -- requests the sampler finds by itself (SampledRequest) -------------------------------------


def _split_app(registered: list[int]) -> FastAPI:
    app = FastAPI()

    async def wait_for_db() -> None:
        await asyncio.sleep(0.03)

    @app.get("/split")
    async def split() -> dict[str, int]:
        registered.append(len(Sampler.shared()._tasks))
        seventy()
        thirty()
        await wait_for_db()
        return {}

    @app.get("/sync")
    def sync_route() -> dict[str, int]:
        burn(0.05)
        return {}

    return app


async def test_on_the_main_thread_requests_are_found_without_registering() -> None:
    """The production case (uvicorn's loop on the main thread): nothing is registered per
    request, and running, awaiting and worker-thread time are all sampled."""
    registered: list[int] = []
    app = _split_app(registered)
    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.001)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            await asyncio.gather(*(client.get("/split") for _ in range(20)))
            for _ in range(3):
                await client.get("/sync")
        if not mw._passive:
            pytest.skip("the signal timer is not available here")
        assert registered and set(registered) == {0}
        tree = mw.route_trees["GET /split"]
        assert tree.find("seventy") and tree.find("thirty")
        assert tree.find("wait_for_db")
        assert tree.find("sleep")[0].await_time > 0  # suspended requests, in their await
        sync_tree = mw.route_trees["GET /sync"]
        (node,) = sync_tree.find("sync_route")
        # The worker thread's samples, under the endpoint. (How much of the 150 ms they
        # cover depends on when the busy worker lets the signal handler have the GIL: a
        # third of it, once, with the test suite running beside this on both cores.)
        assert [child.function for child in node.children.values()] == ["burn"]
        assert node.total > 0
    finally:
        mw.close()
    assert Sampler.shared()._passive == 0


def test_off_the_main_thread_requests_register() -> None:
    """TestClient runs the app in a thread of its own: the signal handler cannot see that
    loop, so each request registers with the sampler as before, and is sampled."""
    from starlette.testclient import TestClient

    registered: list[int] = []
    app = _split_app(registered)
    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.001)
    try:
        with TestClient(mw) as client:
            client.get("/split")
            for _ in range(3):
                client.get("/sync")
        assert not mw._passive
        assert registered and min(registered) >= 1
        # (a sampler thread gets few ticks next to a busy loop: the worker's 150 ms are judged)
        assert mw.route_trees["GET /sync"].find("burn")
    finally:
        mw.close()


async def test_a_slow_or_failed_request_without_samples_is_still_kept() -> None:
    app = FastAPI()

    @app.get("/fails")
    async def fails() -> None:
        raise RuntimeError("boom")

    @app.get("/fine")
    async def fine() -> dict[str, int]:
        return {}

    # An interval no request lives to see: no sample is ever taken.
    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.9, slow_ms=0)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw, raise_app_exceptions=False),
            base_url="http://t",
        ) as client:
            assert (await client.get("/fine")).status_code == 200
            assert (await client.get("/fails")).status_code == 500
        kept = {(p.route, p.trigger) for p in mw.store.profiles}
        assert kept == {("/fine", "slow"), ("/fails", "slow")}
        errors = [p for p in mw.store.profiles if p.route == "/fails"]
        assert errors[0].error == "RuntimeError"
    finally:
        mw.close()


async def test_a_passive_request_keeps_its_status_and_body_size() -> None:
    """The passive path's send wrapper notes the status (the 5xx rule) and the body size in
    the request's holder; a kept profile reports both, and the response is unchanged."""
    from fastapi import HTTPException

    app = FastAPI()

    @app.get("/down")
    async def down() -> None:
        raise HTTPException(status_code=503, detail="down for maintenance")

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        return {"answer": "x" * 300}

    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.9, slow_ms=0)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            down_response = await client.get("/down")
            slow_response = await client.get("/slow")
        if not mw._passive:
            pytest.skip("the signal timer is not available here")
        assert type(mw).__name__ == "_SampledMiddleware"
        assert down_response.status_code == 503
        assert down_response.json() == {"detail": "down for maintenance"}
        assert slow_response.json() == {"answer": "x" * 300}
        kept = {p.route: p for p in mw.store.profiles}
        assert (kept["/down"].status, kept["/down"].response_bytes) == (
            503,
            len(down_response.content),
        )
        assert (kept["/slow"].status, kept["/slow"].response_bytes) == (
            200,
            len(slow_response.content),
        )
    finally:
        mw.close()


async def test_a_passive_5xx_response_is_kept_without_a_slow_threshold() -> None:
    app = FastAPI()

    @app.get("/broken")
    async def broken() -> JSONResponse:
        return JSONResponse({"error": "no"}, status_code=502)

    @app.get("/fine")
    async def fine() -> dict[str, int]:
        return {}

    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.9)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            assert (await client.get("/fine")).status_code == 200
            assert (await client.get("/broken")).status_code == 502
        if not mw._passive:
            pytest.skip("the signal timer is not available here")
        assert [(p.route, p.trigger, p.status) for p in mw.store.profiles] == [
            ("/broken", "error", 502)
        ]
    finally:
        mw.close()


async def test_the_timer_idles_without_traffic_and_a_request_wakes_it() -> None:
    from fastprof.backends.continuous import IDLE_DELAY

    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, int]:
        return {}

    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.002)
    sampler = Sampler.shared()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            await client.get("/")
            if not mw._passive:
                pytest.skip("the signal timer is not available here")
            deadline = time.time() + 2
            while sampler.armed and time.time() < deadline:
                await asyncio.sleep(0.005)
            assert not sampler.armed  # no request in flight: the timer slowed down
            assert IDLE_DELAY > 0.002
            await client.get("/")
            assert sampler.armed or sampler._idle_since is not None  # woken, then idle again
            await asyncio.sleep(1.5)
            assert sampler._mode is None  # and stopped after a second of nothing
            await client.get("/")
            assert sampler._mode == "signal"
    finally:
        mw.close()


@pytest.mark.parametrize("where", ["wake", "promote", "settle"])
async def test_a_failure_of_the_passive_path_never_fails_the_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    import logging

    app = FastAPI()

    @app.get("/work")
    async def work() -> dict[str, str]:
        burn(0.02)
        await asyncio.sleep(0.01)
        return {"ok": "yes"}

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected failure")

    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.001, slow_ms=0)
    sampler = Sampler.shared()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            assert (await client.get("/work")).json() == {"ok": "yes"}
            if not mw._passive:
                pytest.skip("the signal timer is not available here")
            sampler.stop()  # the next request must wake it
            target = {"wake": (sampler, "wake_passive"), "promote": (sampler, "promote")}
            owner, name = target.get(where, (mw, "_settle"))
            monkeypatch.setattr(owner, name, broken)
            with caplog.at_level(logging.ERROR, logger="fastprof"):
                response = await client.get("/work")
        assert response.status_code == 200 and response.json() == {"ok": "yes"}
        if where != "promote":  # a tick that fails loses its sample, silently
            assert "injected failure" in caplog.text
            assert "the request continues" in caplog.text
    finally:
        monkeypatch.undo()
        mw.close()


async def test_context_copies_taken_during_a_request_keep_nothing_of_it_alive() -> None:
    """The loop's callbacks each take a copy of the context, and copies outlive the request.
    Holding the response wrapper there kept the server's per-request objects alive, and uvicorn
    ran a garbage collection every 36 requests instead of every 2,600 (docs/performance.md)."""
    import contextvars
    import gc
    import weakref

    copies: list[contextvars.Context] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] == "http":
            copies.append(contextvars.copy_context())
            await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.001)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, object]) -> None:
        return None

    try:
        await mw(scope, receive, send)  # the first request decides (and switches the class)
        if not mw._passive:
            pytest.skip("the signal timer is not available here")
        gc.disable()
        try:
            sent = weakref.ref(send)
            await mw(scope, receive, send)
            del send
            assert len(copies) == 2
            assert sent() is None  # no copy of the context holds the request's send
        finally:
            gc.enable()
    finally:
        mw.close()


async def test_live_tasks_lists_the_loops_unfinished_tasks() -> None:
    from fastprof.backends.continuous import _live_tasks

    async def done() -> None:
        pass

    finished = asyncio.create_task(done())
    await finished

    async def nap() -> None:
        await asyncio.sleep(1)

    tasks = [asyncio.create_task(nap()) for _ in range(3)]
    await asyncio.sleep(0)
    try:
        found = _live_tasks(asyncio.get_running_loop())
        assert set(tasks) <= set(found)
        assert finished not in found
        assert asyncio.current_task() in found
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_with_slow_ms_a_fast_request_builds_no_capture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastprof.backends.continuous import SampledCapture

    app = FastAPI()

    @app.get("/fast")
    async def fast() -> dict[str, int]:
        return {}

    @app.get("/slow")
    async def slow() -> dict[str, int]:
        await asyncio.sleep(0.06)
        return {}

    built: list[object] = []
    real = SampledCapture.unregistered.__func__  # type: ignore[attr-defined]

    def counting(cls: type, *args: object) -> object:
        capture = real(cls, *args)
        built.append(capture)
        return capture

    monkeypatch.setattr(SampledCapture, "unregistered", classmethod(counting))
    # An interval no request lives to see: no tick takes a sample.
    mw = FastprofMiddleware(app, backend="continuous", continuous_interval=0.9, slow_ms=50)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            for _ in range(20):
                await client.get("/fast")
            assert not built and not mw.store.profiles
            await client.get("/slow")
        assert len(built) == 1
        assert [p.route for p in mw.store.profiles] == ["/slow"]
    finally:
        mw.close()
