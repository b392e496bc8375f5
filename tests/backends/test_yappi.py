"""The yappi backend: through the Backend contract, and around a real FastAPI app."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yappi
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from fastprof import _threadpool
from fastprof._context import current_capture
from fastprof._frames import code_key
from fastprof.backends import BackendUnavailable, TreeSource, backend_class
from fastprof.backends.yappi import YappiBackend, _build, _Func
from fastprof.model import ROOT_KEY, CallTree


def burn(seconds: float) -> int:
    """Keep the CPU busy for ``seconds`` of wall time."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def blocking_work() -> int:
    return burn(0.02)


async def napper() -> None:
    await asyncio.sleep(0.1)


def assert_consistent(tree: CallTree) -> None:
    """The model's invariant: total == self + await + children, everywhere."""
    for node in [tree.root, *(node for _, node in tree.walk())]:
        parts = node.self_time + node.await_time + sum(c.total for c in node.children.values())
        assert node.total == pytest.approx(parts, abs=1e-9), node
        assert node.self_time >= 0 and node.await_time >= 0, node


def parents_of(tree: CallTree, function: str) -> list[str]:
    for parents, node in tree.walk():
        if node.function == function:
            return [parent.function for parent in parents]
    raise AssertionError(f"{function} is not in the tree")


class Captured:
    """A minimal profiling middleware: a capture around each request, as fastprof's does."""

    def __init__(self, app: Any, backend: YappiBackend) -> None:
        self.app = app
        self.backend = backend
        self.sources: dict[str, TreeSource] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        capture = self.backend.start(sys._getframe(), is_async=True)
        token = current_capture.set(capture)
        _threadpool.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            source = capture.stop()
            _threadpool.release()
            current_capture.reset(token)
            self.sources[scope["query_string"].decode()] = source

    def tree(self, query: str) -> CallTree:
        return self.sources[query].get()


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/sleep")
    async def sleep_endpoint() -> dict[str, bool]:
        await asyncio.sleep(0.05)
        return {"ok": True}

    @app.get("/cpu")
    async def cpu_endpoint() -> dict[str, int]:
        return {"n": burn(0.02)}

    @app.get("/def")
    def def_endpoint() -> dict[str, int]:
        return {"n": blocking_work()}

    @app.get("/offload")
    async def offload_endpoint() -> dict[str, int]:
        return {"n": await run_in_threadpool(blocking_work)}

    return app


@pytest.fixture
def backend() -> Iterator[YappiBackend]:
    backend = YappiBackend()
    yield backend
    backend.close()


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


# -- the contract -------------------------------------------------------------------------


def test_registered_under_its_name() -> None:
    assert backend_class("yappi") is YappiBackend


def test_cpu_bound_function_shows_with_its_time(backend: YappiBackend) -> None:
    capture = backend.start(sys._getframe(), is_async=False)
    burn(0.05)
    tree = capture.stop().get()

    assert tree.backend == "yappi"
    [node] = tree.find("burn")
    assert 0.049 <= node.total < 1.0
    # perf_counter is C: its time is burn's own, as a sampler would show it
    assert node.self_time == pytest.approx(node.total)
    assert node.samples == 1  # calls, for a tracing backend
    assert "test_cpu_bound_function_shows_with_its_time" not in tree.functions()
    assert_consistent(tree)


def test_block_hangs_under_the_function_that_opened_it(backend: YappiBackend) -> None:
    # Like profile(): the anchor is the caller of the function holding the block.
    def with_block() -> TreeSource:
        capture = backend.start(sys._getframe(1), is_async=False)
        burn(0.01)
        return capture.stop()

    tree = with_block().get()
    assert [child.function for child in tree.root.children.values()] == ["with_block"]
    assert parents_of(tree, "burn") == ["with_block"]


@pytest.mark.parametrize(("clock", "low", "high"), [("wall", 0.09, 1.0), ("cpu", 0.0, 0.02)])
async def test_clock_decides_whether_awaiting_costs(clock: str, low: float, high: float) -> None:
    backend = YappiBackend(clock=clock)  # type: ignore[arg-type]
    try:
        capture = backend.start(sys._getframe(), is_async=True)
        await napper()
        tree = capture.stop().get()
    finally:
        backend.close()

    assert tree.meta["clock"] == clock
    [node] = tree.find("napper")
    assert low <= node.total < high
    if clock == "wall":  # suspended time is await time, on the frame that awaited
        [sleep] = tree.find("sleep")
        assert sleep.await_time == pytest.approx(sleep.total, rel=0.05)
    else:
        assert all(n.await_time == 0 for _, n in tree.walk())
    assert_consistent(tree)


def test_yappi_runs_only_while_a_capture_is_active() -> None:
    wall, other = YappiBackend(), YappiBackend()
    first = wall.start(sys._getframe(), is_async=False)
    second = other.start(sys._getframe(), is_async=False)
    assert yappi.is_running()
    first.stop()
    assert yappi.is_running()
    second.stop()
    assert not yappi.is_running()
    assert sys.getprofile() is None


def test_snapshot_survives_the_next_captures() -> None:
    backend = YappiBackend()
    capture = backend.start(sys._getframe(), is_async=False)
    burn(0.01)
    source = capture.stop()  # the last capture: yappi stops and its stats are cleared
    later = backend.start(sys._getframe(), is_async=False)
    later.stop().get()
    assert source.get().find("burn")


def test_bad_clock_is_refused() -> None:
    with pytest.raises(ValueError, match=r"clock must be one of 'wall', 'cpu', got 'gpu'"):
        YappiBackend(clock="gpu")  # type: ignore[arg-type]


def test_one_clock_at_a_time() -> None:
    wall = YappiBackend(clock="wall")
    capture = wall.start(sys._getframe(), is_async=False)
    try:
        with pytest.raises(BackendUnavailable, match="wall clock"):
            YappiBackend(clock="cpu").start(sys._getframe(), is_async=False)
    finally:
        capture.stop()
    assert not yappi.is_running()


def test_yappi_started_elsewhere_is_left_alone() -> None:
    yappi.start()
    try:
        with pytest.raises(BackendUnavailable, match="already running"):
            YappiBackend().start(sys._getframe(), is_async=False)
    finally:
        yappi.stop()
        yappi.clear_stats()


def test_close_stops_yappi_under_live_captures() -> None:
    backend = YappiBackend()
    capture = backend.start(sys._getframe(), is_async=False)
    backend.close()
    assert not yappi.is_running()
    tree = capture.stop().get()  # still a (now empty) tree, no error
    assert tree.total == 0


def test_missing_yappi_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yappi", None)
    monkeypatch.delitem(sys.modules, "fastprof.backends.yappi")
    with pytest.raises(BackendUnavailable, match=r"pip install 'fastprof-asgi\[yappi\]'"):
        importlib.import_module("fastprof.backends.yappi")


def test_inner_call_of_a_recursive_coroutine_is_placed_where_it_recurses() -> None:
    # FastAPI's shape: wrap -> router -> handler -> wrap -> endpoint. yappi merges both calls
    # of `wrap` into one function, times only the outer one, and leaves the inner call's wait
    # in `handler`'s own time.
    def key(name: str) -> tuple[str, str, int]:
        return (name, "/app.py", 1)

    funcs = {
        1: _Func(key("wrap"), 1.0, 0.0, 2, True, False, ((2, 1, 1.0), (4, 1, 1.0))),
        2: _Func(key("router"), 1.0, 0.0, 1, True, False, ((3, 1, 1.0),)),
        3: _Func(key("handler"), 1.0, 1.0, 1, True, False, ((1, 1, 0.0),)),
        4: _Func(key("endpoint"), 1.0, 0.2, 1, True, False, ((5, 1, 0.8),)),
        5: _Func(key("work"), 0.8, 0.8, 1, False, False, ()),
    }
    tree = _build(funcs, [], None, [], "wall", 1.0)

    assert parents_of(tree, "work") == ["wrap", "router", "handler", "wrap", "endpoint"]
    assert tree.total == pytest.approx(1.0)
    [handler] = tree.find("handler")
    assert handler.await_time == pytest.approx(0.0)
    assert_consistent(tree)


def test_mutual_recursion_called_from_the_block_keeps_its_whole_time() -> None:
    # even -> odd -> even ..., the outer `even` called by untagged code (a profile() block);
    # the edge odd -> even only measures the inner calls, nested in the outer one.
    funcs = {
        7: _Func(("even", "/r.py", 4), 3.484, 0.009, 21, False, False, ((8, 20, 3.483),)),
        8: _Func(
            ("odd", "/r.py", 5), 3.483, 0.016, 20, False, False, ((7, 20, 3.302), (9, 20, 3.459))
        ),
        9: _Func(("sleep", "time", 0), 3.459, 3.459, 20, False, True, ()),
    }
    tree = _build(funcs, [], None, [], "wall", 3.5)
    [even] = tree.root.children.values()
    assert even.function == "even"
    assert even.total == pytest.approx(3.484, abs=0.01)
    assert "sleep" not in tree.functions()  # C functions are their caller's own time
    assert_consistent(tree)


def test_a_shared_helper_is_split_among_its_callers() -> None:
    def key(name: str) -> tuple[str, str, int]:
        return (name, "/app.py", 1)

    funcs = {
        1: _Func(key("a"), 0.3, 0.0, 1, False, False, ((3, 1, 0.3),)),
        2: _Func(key("b"), 0.1, 0.0, 1, False, False, ((3, 1, 0.1),)),
        3: _Func(key("helper"), 0.4, 0.2, 2, False, False, ((4, 2, 0.2),)),
        4: _Func(key("leaf"), 0.2, 0.2, 2, False, False, ()),
    }
    tree = _build(funcs, [], None, [], "wall", 0.4)
    a, b = (tree.root.children[key(name)] for name in ("a", "b"))
    assert a.children[key("helper")].total == pytest.approx(0.3)
    assert a.children[key("helper")].children[key("leaf")].total == pytest.approx(0.15)
    assert b.children[key("helper")].total == pytest.approx(0.1)
    assert tree.root.key == ROOT_KEY
    assert_consistent(tree)


# -- around a real app ----------------------------------------------------------------------


async def test_concurrent_requests_see_only_their_own_frames(backend: YappiBackend) -> None:
    app = Captured(make_app(), backend)
    async with client(app) as http:
        responses = await asyncio.gather(
            *(http.get(f"/{'sleep' if i % 2 else 'cpu'}?{i}") for i in range(20))
        )
    assert all(r.status_code == 200 for r in responses)
    assert not yappi.is_running()

    for i in range(20):
        tree = app.tree(str(i))
        functions = tree.functions()
        if i % 2:
            assert "sleep_endpoint" in functions
            assert not functions & {"cpu_endpoint", "burn"}
            [node] = tree.find("sleep_endpoint")
            assert node.total >= 0.049
            assert sum(n.await_time for n in tree.find("sleep")) >= 0.045
        else:
            assert {"cpu_endpoint", "burn"} <= functions
            assert "sleep_endpoint" not in functions
            [node] = tree.find("burn")
            assert node.total >= 0.019
        # only frames below the anchor: the app on top, not the wrapper or httpx above it
        # (beside it may be the loop's callbacks run in the request's context, like sleep's)
        top = max(tree.root.children.values(), key=lambda node: node.total)
        assert top.file.endswith("fastapi/applications.py")
        assert "handle_async_request" not in functions
        assert code_key(Captured.__call__.__code__) not in {n.key for _, n in tree.walk()}
        assert tree.total <= tree.duration * 1.05 + 0.005
        assert_consistent(tree)


@pytest.mark.parametrize(("path", "function"), [("/def", "def_endpoint"), ("/offload", None)])
async def test_threadpool_work_shows_under_the_request(
    backend: YappiBackend, path: str, function: str | None
) -> None:
    app = Captured(make_app(), backend)
    async with client(app) as http:
        # a first request warms FastAPI up; the second one is the one looked at
        for query in ("warm", "real"):
            assert (await http.get(f"{path}?{query}")).status_code == 200

    tree = app.tree("real")
    assert parents_of(tree, "burn")[-1] == "blocking_work"
    above = parents_of(tree, "blocking_work")
    assert "run_in_threadpool" in above
    if function is not None:
        assert function in above
    [work] = tree.find("blocking_work")
    assert work.total >= 0.019
    # the await on the worker thread absorbed the thread's time: nothing counted twice
    assert tree.total <= tree.duration * 1.05 + 0.005
    assert_consistent(tree)


async def test_one_request_after_another_reuses_nothing(backend: YappiBackend) -> None:
    app = Captured(make_app(), backend)
    async with client(app) as http:
        await http.get("/cpu?a")
        await http.get("/sleep?b")
    assert "cpu_endpoint" in app.tree("a").functions()
    assert "cpu_endpoint" not in app.tree("b").functions()


async def test_tasks_the_request_spawns_are_its_work(backend: YappiBackend) -> None:
    async def fetch_a() -> None:
        await asyncio.sleep(0.01)
        burn(0.005)

    async def fetch_b() -> None:
        await asyncio.sleep(0.01)

    app = FastAPI()

    @app.get("/fan-out")
    async def fan_out() -> None:
        await asyncio.gather(fetch_a(), fetch_b())

    wrapped = Captured(app, backend)
    async with client(wrapped) as http:
        await asyncio.gather(http.get("/fan-out?x"), http.get("/fan-out?y"))

    for query in ("x", "y"):
        tree = wrapped.tree(query)
        assert {"fan_out", "fetch_a", "fetch_b", "burn"} <= tree.functions()
        [node] = tree.find("fetch_a")
        assert node.total >= 0.014  # its own task: one request's fetch_a, not both
        assert node.total < 0.1
        assert_consistent(tree)
