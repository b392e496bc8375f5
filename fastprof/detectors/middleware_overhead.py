"""middleware_overhead: layers built on Starlette's BaseHTTPMiddleware, and what they cost.

``app_findings(app)`` walks the app it is given (the one FastprofMiddleware wraps): a
Starlette/FastAPI app's ``user_middleware``, the ``.app`` chain of wrapping middlewares, and
apps mounted under it. Each layer built on ``BaseHTTPMiddleware`` - a subclass, or a function
added with ``@app.middleware("http")`` - is one finding for the whole app (route None) at the
line that defines the class or function.

**Cost per request** is what BaseHTTPMiddleware's own machinery (a task group, memory streams,
a ``StreamingResponse`` around ``call_next``) adds to one request: an empty dispatch
(``return await call_next(request)``) around a trivial ASGI app, timed against the bare app
and against a pure ASGI pass-through, interleaved, median over rounds of 10 calls. The user's
dispatch body is never run (it may have side effects); its own time comes on top. The
measurement runs once per process, in a private event loop on a worker thread, within
``budget_ms``; the caller (startup, or the first request) waits for it.
"""

from __future__ import annotations

import asyncio
import inspect
import linecache
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from fastprof.advice import advice
from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, Severity, is_user_file

_MAX_NODES = 200


@dataclass(frozen=True, slots=True)
class Cost:
    """Seconds one request spends in a layer's machinery (median per call)."""

    bhm: float
    pure: float
    rounds: int


@dataclass(frozen=True, slots=True)
class _Layer:
    name: str
    form: str  # "class" | "decorator"
    location: Location | None
    module: str


_cost_lock = threading.Lock()
_cost: Cost | None = None


def measured_cost(budget: float = 0.04) -> Cost | None:
    """BaseHTTPMiddleware's cost per request, measured once per process (None: it timed out)."""
    global _cost
    with _cost_lock:
        if _cost is None:
            _cost = measure_cost(budget)
        return _cost


def measure_cost(budget: float = 0.04) -> Cost | None:
    """Time the layers in a private loop on a worker thread; wait at most a few budgets."""
    result: list[Cost] = []
    worker = threading.Thread(
        target=lambda: result.append(asyncio.run(_measure(budget))),
        name="fastprof-middleware-cost",
        daemon=True,
    )
    worker.start()
    worker.join(budget * 5 + 1.0)
    return result[0] if result else None


async def _measure(budget: float) -> Cost:
    from starlette.middleware.base import BaseHTTPMiddleware

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def passthrough(request: Any, call_next: Any) -> Any:
        return await call_next(request)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    apps: dict[str, Any] = {
        "bare": bare,
        "pure": _PassThrough(bare),
        "bhm": BaseHTTPMiddleware(bare, passthrough),
    }
    timings: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(10):  # warm up
        for app in apps.values():
            await app(_scope(), receive, send)
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline or len(timings["bare"]) < 5:
        for name, app in apps.items():
            started = time.perf_counter()
            for _ in range(10):
                await app(_scope(), receive, send)
            timings[name].append((time.perf_counter() - started) / 10)
    base = statistics.median(timings["bare"])
    return Cost(
        bhm=max(statistics.median(timings["bhm"]) - base, 0.0),
        pure=max(statistics.median(timings["pure"]) - base, 0.0),
        rounds=len(timings["bare"]),
    )


class _PassThrough:
    """The pure ASGI equivalent of an empty dispatch: wraps ``send``, changes nothing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            await send(message)

        await self.app(scope, receive, sending)


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


def _layers(app: Any) -> Iterator[_Layer]:
    """BaseHTTPMiddleware layers reachable from ``app``, outermost first."""
    try:
        from starlette.middleware.base import BaseHTTPMiddleware
        from starlette.routing import Host, Mount
    except ImportError:
        return
    todo: list[Any] = [app]
    seen: set[int] = set()
    while todo and len(seen) < _MAX_NODES:
        node = todo.pop(0)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, BaseHTTPMiddleware):
            yield _layer(type(node), node.dispatch_func)
        configured = getattr(node, "user_middleware", None)
        if isinstance(configured, list):  # a Starlette/FastAPI app: its middleware as declared
            for entry in configured:
                cls = getattr(entry, "cls", None)
                if isinstance(cls, type) and issubclass(cls, BaseHTTPMiddleware):
                    kwargs = getattr(entry, "kwargs", {}) or {}
                    args = getattr(entry, "args", ()) or ()
                    yield _layer(cls, kwargs.get("dispatch", args[0] if args else None))
            node = getattr(node, "router", None)  # not its built stack: already covered
        routes = getattr(node, "routes", None)
        if isinstance(routes, list):  # a router: mounted apps, and middleware given to it
            todo.extend(route.app for route in routes if isinstance(route, Mount | Host))
            stack = getattr(node, "middleware_stack", None)
            if stack is not None and not inspect.ismethod(stack):
                todo.append(stack)
        todo.append(getattr(node, "app", None))


def _layer(cls: type, dispatch: Any) -> _Layer:
    from starlette.middleware.base import BaseHTTPMiddleware

    if cls is BaseHTTPMiddleware and dispatch is not None:  # @app.middleware("http")
        func = inspect.unwrap(dispatch)
        code = getattr(func, "__code__", None)
        location = Location(code.co_filename, code.co_firstlineno, code.co_name) if code else None
        return _Layer(
            getattr(func, "__qualname__", repr(func)),
            "decorator",
            location,
            getattr(func, "__module__", "") or "",
        )
    return _Layer(cls.__qualname__, "class", _class_location(cls), cls.__module__)


def _class_location(cls: type) -> Location | None:
    """The ``class`` line; failing that (module gone, no source), the line of its dispatch."""
    try:
        file = inspect.getsourcefile(cls)
        if file is not None:
            return Location(file, inspect.getsourcelines(cls)[1], cls.__qualname__)
    except (OSError, TypeError):
        pass
    code = getattr(getattr(cls, "dispatch", None), "__code__", None)
    if code is None:
        return None
    for line in range(code.co_firstlineno, 0, -1):  # the nearest class statement above
        if linecache.getline(code.co_filename, line).lstrip().startswith(f"class {cls.__name__}"):
            return Location(code.co_filename, line, cls.__qualname__)
    return Location(code.co_filename, code.co_firstlineno, code.co_name)


class MiddlewareOverheadDetector(Detector):
    """BaseHTTPMiddleware layers (and ``@app.middleware("http")``): an app-level finding each.

    :param budget_ms: time spent measuring the cost per request (once per process).
    :param measure: False skips the measurement (findings then carry no cost).
    """

    kind: ClassVar[str] = "middleware_overhead"

    def __init__(self, *, budget_ms: float = 40.0, measure: bool = True) -> None:
        super().__init__()
        if budget_ms <= 0:
            raise ValueError("middleware_overhead budget_ms must be positive")
        self.budget = budget_ms / 1000
        self.measure = measure

    def app_findings(self, app: Any) -> list[Finding]:
        layers: list[_Layer] = []
        for layer in _layers(app):
            if all(layer.location != known.location for known in layers):
                layers.append(layer)
        if not layers:
            return []
        cost = measured_cost(self.budget) if self.measure else None
        return [self._finding(layer, len(layers), cost) for layer in layers]

    def _finding(self, layer: _Layer, count: int, cost: Cost | None) -> Finding:
        library = layer.location is None or not is_user_file(layer.location.file)
        facts: dict[str, Any] = {
            "name": layer.name,
            "form": layer.form,
            "library": library,
            "module": layer.module,
            "layers": count,
        }
        evidence: dict[str, Any] = {
            "middleware": layer.name,
            "form": '@app.middleware("http")' if layer.form == "decorator" else "subclass",
            "layers": count,
        }
        if cost is not None:
            facts.update(cost_us=cost.bhm * 1e6, pure_us=cost.pure * 1e6)
            evidence.update(
                cost_us_per_request=round(cost.bhm * 1e6, 1),
                pure_asgi_us_per_request=round(cost.pure * 1e6, 2),
                total_cost_us_per_request=round(cost.bhm * 1e6 * count, 1),
                measured=(
                    "empty dispatch around a trivial ASGI app vs the bare app, "
                    f"median of {cost.rounds} rounds of 10 calls, private event loop"
                ),
            )
        severity: Severity = "low" if library or (cost and cost.bhm < 20e-6) else "medium"
        cost_text = f": +{cost.bhm * 1e6:.0f} µs per request" if cost is not None else ""
        return Finding(
            kind=self.kind,
            severity=severity,
            title=f"{layer.name} runs on BaseHTTPMiddleware{cost_text}",
            evidence=evidence,
            location=layer.location,
            advice=advice(self.kind, **facts),
            route=None,
        )
