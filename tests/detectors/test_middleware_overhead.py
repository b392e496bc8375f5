from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from fastprof import FastprofMiddleware
from fastprof.detectors.middleware_overhead import (
    Cost,
    MiddlewareOverheadDetector,
    measure_cost,
)
from fastprof.findings import Finding

THIS = str(Path(__file__))
CallNext = Callable[[Request], Awaitable[Response]]


def line_of(marker: str) -> int:
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no line marked {marker!r}")


class Timing(BaseHTTPMiddleware):  # timing-class
    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        return await call_next(request)


class Auth(BaseHTTPMiddleware):  # auth-class
    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        return await call_next(request)


class PureASGI:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def detector() -> MiddlewareOverheadDetector:
    return MiddlewareOverheadDetector(measure=False)


def lines(findings: list[Finding]) -> list[tuple[str, int]]:
    return sorted((f.location.file, f.location.line) for f in findings if f.location)


def test_subclass_and_decorator_are_found_pure_asgi_is_not() -> None:
    app = FastAPI()
    app.add_middleware(Timing)
    app.add_middleware(PureASGI)
    app.add_middleware(GZipMiddleware)

    @app.middleware("http")  # decorated-middleware
    async def stamp(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    found = detector().app_findings(app)
    assert lines(found) == [
        (THIS, line_of("timing-class")),
        (THIS, line_of("decorated-middleware")),
    ]
    by_name = {f.evidence["middleware"]: f for f in found}
    assert by_name["Timing"].evidence["form"] == "subclass"
    assert (
        by_name["test_subclass_and_decorator_are_found_pure_asgi_is_not.<locals>.stamp"].evidence[
            "form"
        ]
        == '@app.middleware("http")'
    )
    for finding in found:
        assert finding.kind == "middleware_overhead"
        assert finding.route is None
        assert finding.evidence["layers"] == 2
        assert "pure ASGI middleware" in finding.advice
    assert "@app.middleware" in by_name[next(n for n in by_name if n.endswith("stamp"))].advice


def test_no_base_http_middleware_no_finding() -> None:
    app = FastAPI()
    app.add_middleware(PureASGI)
    app.add_middleware(GZipMiddleware)
    assert detector().app_findings(app) == []


def test_mounted_apps_routers_and_wrapped_instances_are_walked() -> None:
    inner = Starlette(routes=[Route("/", hello)], middleware=[Middleware(Auth)])
    router = Router(routes=[Route("/", hello)], middleware=[Middleware(Timing)])
    outer = Starlette(routes=[Mount("/inner", app=inner), Mount("/router", app=router)])
    wrapped = PureASGI(Timing(outer))  # an instance around the app, seen through .app
    found = detector().app_findings(wrapped)
    assert lines(found) == [(THIS, line_of("timing-class")), (THIS, line_of("auth-class"))]
    assert {f.evidence["layers"] for f in found} == {2}


def test_a_class_used_twice_is_one_finding() -> None:
    app = FastAPI()
    app.add_middleware(Timing)
    sub = FastAPI()
    sub.add_middleware(Timing)
    app.mount("/sub", sub)
    [finding] = detector().app_findings(app)
    assert finding.evidence["middleware"] == "Timing"


def test_middleware_from_an_installed_package_is_low(tmp_path: Path) -> None:
    package = tmp_path / "site-packages"
    package.mkdir()
    (package / "thirdparty_middleware.py").write_text(
        "from starlette.middleware.base import BaseHTTPMiddleware\n\n\n"
        "class VendorMiddleware(BaseHTTPMiddleware):\n"
        "    async def dispatch(self, request, call_next):\n"
        "        return await call_next(request)\n"
    )
    sys.path.insert(0, str(package))
    try:
        from thirdparty_middleware import VendorMiddleware  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(package))
        sys.modules.pop("thirdparty_middleware", None)
    app = FastAPI()
    app.add_middleware(VendorMiddleware)
    [finding] = detector().app_findings(app)
    assert finding.severity == "low"
    assert finding.location is not None and finding.location.line == 4
    assert "installed package (thirdparty_middleware)" in finding.advice


def test_measured_cost_is_in_evidence_and_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastprof.detectors.middleware_overhead as module

    monkeypatch.setattr(module, "_cost", Cost(bhm=95e-6, pure=0.5e-6, rounds=42))
    app = FastAPI()
    app.add_middleware(Timing)
    app.add_middleware(Auth)
    found = MiddlewareOverheadDetector().app_findings(app)
    assert len(found) == 2
    evidence = found[0].evidence
    assert evidence["cost_us_per_request"] == 95.0
    assert evidence["pure_asgi_us_per_request"] == 0.5
    assert evidence["total_cost_us_per_request"] == 190.0
    assert "42 rounds" in evidence["measured"]
    assert "adds 95 µs to every request" in found[0].advice
    assert "+95 µs per request" in found[0].title
    assert found[0].severity == "medium"


def test_measure_cost_runs_a_private_loop_and_leaves_no_thread() -> None:
    cost = measure_cost(0.01)
    assert cost is not None
    assert cost.rounds >= 5
    # The machinery (task group, streams, a StreamingResponse) against one wrapped send.
    assert cost.bhm > cost.pure
    assert not [t for t in threading.enumerate() if t.name == "fastprof-middleware-cost"]


async def test_measurement_works_from_inside_a_running_loop() -> None:
    # app_findings runs at startup, on the loop: the measurement must not need this loop.
    cost = measure_cost(0.005)
    assert cost is not None and cost.rounds >= 5
    await asyncio.sleep(0)


async def lifespan_through(app: ASGIApp) -> Callable[[], Awaitable[None]]:
    """Start ``app``'s lifespan through the ASGI interface; returns the shutdown."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        return await queue.get()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"] == "lifespan.shutdown.complete":
            stopped.set()

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await queue.put({"type": "lifespan.startup"})
    await started.wait()

    async def shutdown() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await stopped.wait()
        await task

    return shutdown


async def test_reported_once_at_startup_through_the_middleware() -> None:
    app = FastAPI()
    app.add_middleware(Timing)

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"ok": "yes"}

    mw = FastprofMiddleware(
        app,
        detect=["middleware_overhead"],
        detector_options={"middleware_overhead": {"measure": False}},
    )
    shutdown = await lifespan_through(mw)
    try:
        assert [f.kind for f in mw.store.findings] == ["middleware_overhead"]
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(3):
                assert (await client.get("/")).status_code == 200
    finally:
        await shutdown()
    [finding] = mw.store.findings
    assert finding.route is None
    assert finding.location is not None and finding.location.line == line_of("timing-class")


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="budget_ms"):
        MiddlewareOverheadDetector(budget_ms=0)


async def test_seen_from_inside_the_stack_when_added_with_add_middleware() -> None:
    app = FastAPI()
    app.add_middleware(Timing)  # added first: inside FastprofMiddleware, which it can see
    app.add_middleware(
        FastprofMiddleware,
        detect=["middleware_overhead"],
        detector_options={"middleware_overhead": {"measure": False}},
    )

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/")).status_code == 200
    stack: Any = app.middleware_stack
    while not isinstance(stack, FastprofMiddleware):
        stack = stack.app
    try:
        [finding] = stack.store.findings
    finally:
        stack.close()
    assert finding.location is not None and finding.location.line == line_of("timing-class")
