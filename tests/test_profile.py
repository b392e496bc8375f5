from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from fastprof import FastprofMiddleware, profile


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def outer_work() -> None:
    spin(0.03)
    inner_work()


def inner_work() -> None:
    spin(0.02)


def test_with_block() -> None:
    with profile("block") as p:
        outer_work()
    assert p.result is not None and p.result.label == "block"
    assert p.result.duration >= 0.05
    (node,) = p.tree.find("outer_work")
    assert node.total >= 0.04
    assert "inner_work" in p.tree.functions()
    assert "outer_work" in p.text()


def test_results_before_the_block_ends_is_an_error() -> None:
    p = profile()
    with pytest.raises(RuntimeError, match="nothing profiled yet"):
        p.text()


async def test_async_with_counts_await_as_await() -> None:
    async def waits() -> None:
        await asyncio.sleep(0.05)
        spin(0.02)

    async with profile() as p:
        await waits()
    (node,) = p.tree.find("waits")
    assert node.total >= 0.06  # a loaded machine only makes it longer
    sleep = next(n for n in p.tree.find("sleep"))
    assert sleep.await_time >= 0.04


async def test_async_with_ignores_other_tasks() -> None:
    async def busy_elsewhere() -> None:
        for _ in range(5):
            spin(0.01)
            await asyncio.sleep(0)

    async def mine() -> None:
        await asyncio.sleep(0.08)

    other = asyncio.create_task(busy_elsewhere())
    async with profile() as p:
        await mine()
    await other
    assert "busy_elsewhere" not in p.tree.functions()
    assert "mine" in p.tree.functions()


def test_decorator_without_parentheses_prints_outside_a_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @profile
    def job(n: int) -> int:
        spin(0.02)
        return n * 2

    assert job(21) == 42
    assert job.__name__ == "job"
    assert "job" in capsys.readouterr().err
    p = job.fastprof  # type: ignore[attr-defined]
    assert p.result.label.endswith("job") and len(p.results) == 1


async def test_decorator_with_options_on_async_function() -> None:
    out = io.StringIO()

    @profile(label="load", interval=0.0005, print=out)
    async def load() -> str:
        await asyncio.sleep(0.01)
        spin(0.01)
        return "done"

    results = await asyncio.gather(load(), load())
    assert results == ["done", "done"]
    p = load.fastprof  # type: ignore[attr-defined]
    assert [r.label for r in p.results] == ["load", "load"]
    assert out.getvalue().count("load") >= 2


def test_decorator_print_false_stays_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    @profile(print=False)
    def quiet() -> None:
        spin(0.005)

    quiet()
    assert capsys.readouterr().err == ""


def test_nested_sync_blocks() -> None:
    with profile("outer") as outer:
        spin(0.02)
        with profile("inner") as inner:
            inner_work()
    assert "inner_work" in inner.tree.functions()
    assert "inner_work" in outer.tree.functions()
    assert outer.result is not None and inner.result is not None
    assert outer.result.duration > inner.result.duration


async def test_nested_async_blocks_slice_the_outer_profile() -> None:
    async def step() -> None:
        await asyncio.sleep(0.02)
        spin(0.01)

    async with profile("outer") as outer:
        spin(0.02)
        async with profile("inner") as inner:
            await step()
    assert "step" in inner.tree.functions() and "step" in outer.tree.functions()
    assert "spin" in outer.tree.functions()
    # the inner tree holds only what ran inside the inner block
    assert "spin" not in {n.function for n in inner.tree.root.children.values()}
    assert 0.025 <= inner.tree.total < outer.tree.total


async def test_threadpool_work_inside_an_async_block() -> None:
    async with profile() as p:
        await run_in_threadpool(inner_work)
        await asyncio.to_thread(outer_work)
    assert {"inner_work", "outer_work"} <= p.tree.functions()


async def test_inside_a_request_the_block_attaches_to_the_request() -> None:
    app = FastAPI()

    @app.get("/")
    async def index() -> dict[str, str]:
        async with profile("db part"):
            await asyncio.sleep(0.01)
        with profile("cpu part"):
            inner_work()
        return {}

    mw = FastprofMiddleware(app, sample_rate=1.0)
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/")).status_code == 200
    (record,) = mw.store.profiles
    assert [b.label for b in record.blocks] == ["db part", "cpu part"]
    assert "inner_work" in record.blocks[1].tree.functions()
    assert "index" in record.tree.functions()
    data: Any = record.to_dict()
    assert [b["label"] for b in data["blocks"]] == ["db part", "cpu part"]


def test_other_backends_by_name() -> None:
    with profile(backend="continuous", interval=0.001) as p:
        spin(0.05)
    assert p.tree.backend == "continuous"
    assert "spin" in p.tree.functions()
