"""The hello-world app in every variant that ``bench/overhead.py`` measures.

Each variant is a module attribute, built only when asked for (PEP 562 ``__getattr__``), so
``python -m uvicorn bench.apps:idle`` constructs only the idle variant - one server process
holds one middleware and nothing else. The middleware stack is built eagerly: a variant that
cannot be configured (the yappi backend before it lands, a missing package) fails at import,
uvicorn exits, and the benchmark skips it instead of serving 500s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: Token for the idle variant (a non-loopback trigger would need it; wrk never sends one).
TOKEN = "bench-0123456789"

#: What each variant is, in the order the benchmark lists them.
DESCRIPTIONS: dict[str, str] = {
    "bare": "FastAPI, no middleware",
    "noop": "a pass-through pure ASGI middleware",
    "idle": "FastprofMiddleware, header/query trigger + token, requests not triggered",
    "timing": "FastprofMiddleware(timing=True)",
    "sample_1pct": "FastprofMiddleware(sample_rate=0.01), default: the 1 kHz signal sampler",
    "continuous": 'FastprofMiddleware(backend="continuous"), 100 Hz',
    "pyinstrument_all": "FastprofMiddleware(sample_rate=1.0), pyinstrument at 1 ms",
    "yappi_all": 'FastprofMiddleware(sample_rate=1.0, backend="yappi")',
    "fastapi_profiler": "fastapi-profiler PyInstrumentProfilerMiddleware, its defaults",
    "pyinstrument_recipe": "pyinstrument's FastAPI recipe (@app.middleware), 1 ms, no HTML",
}


class NoopMiddleware:
    """The cheapest possible pure ASGI middleware: the floor any middleware pays."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _hello() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"message": "hello"}

    return app


def _fastprof(**options: Any) -> FastAPI:
    from fastprof import FastprofMiddleware

    app = _hello()
    app.add_middleware(FastprofMiddleware, **options)
    return app


def _fastapi_profiler() -> FastAPI:
    from fastapi_profiler import PyInstrumentProfilerMiddleware  # type: ignore[import-untyped]

    app = _hello()
    # Its defaults: pyinstrument at 0.1 ms, async_mode="enabled", every request profiled and
    # rendered as text, then handed to logging.getLogger("fastapi_profiler").info (which
    # uvicorn's logging config leaves without a handler, so nothing reaches the terminal).
    app.add_middleware(PyInstrumentProfilerMiddleware)
    return app


#: Sessions the recipe keeps, bounded like fastprof's default store (max_profiles=100).
recipe_sessions: deque[Any] = deque(maxlen=100)


def _pyinstrument_recipe() -> FastAPI:
    from pyinstrument import Profiler

    app = _hello()

    # pyinstrument's documented FastAPI recipe, profiling every request, minus the HTML.
    @app.middleware("http")
    async def profile_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        profiler = Profiler(interval=0.001, async_mode="enabled")
        profiler.start()
        response = await call_next(request)
        profiler.stop()
        recipe_sessions.append(profiler.last_session)
        return response

    return app


def _noop() -> FastAPI:
    app = _hello()
    app.add_middleware(NoopMiddleware)
    return app


BUILDERS: dict[str, Callable[[], FastAPI]] = {
    "bare": _hello,
    "noop": _noop,
    "idle": lambda: _fastprof(trigger_header="x-fastprof", trigger_query="fastprof", token=TOKEN),
    "timing": lambda: _fastprof(timing=True),
    "sample_1pct": lambda: _fastprof(sample_rate=0.01),
    "continuous": lambda: _fastprof(backend="continuous"),
    "pyinstrument_all": lambda: _fastprof(sample_rate=1.0, backend="pyinstrument", interval=0.001),
    "yappi_all": lambda: _fastprof(sample_rate=1.0, backend="yappi"),
    "fastapi_profiler": _fastapi_profiler,
    "pyinstrument_recipe": _pyinstrument_recipe,
}

assert BUILDERS.keys() == DESCRIPTIONS.keys()

_built: dict[str, FastAPI] = {}


def build(name: str) -> FastAPI:
    """The app of variant ``name``, with its middleware already instantiated."""
    app = _built.get(name)
    if app is None:
        app = BUILDERS[name]()
        # Instantiate the middleware now so a bad configuration fails at import, not as 500s.
        app.middleware_stack = app.build_middleware_stack()
        _built[name] = app
    return app


def __getattr__(name: str) -> FastAPI:
    if name in BUILDERS:
        return build(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
