"""The demo app: ``demo_app.main:app`` (and ``fixed_app``, its twin for the middleware pitfall).

``create_app()`` builds either; a lifespan handler opens the database (seeding it), the caches,
the HTTP client and the local upstream service at startup and closes them at shutdown.
Settings come from the environment at startup (see ``demo_app.config``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI

from demo_app.config import Settings
from demo_app.resources import close_resources, open_resources
from demo_app.routes import ROUTERS
from demo_app.timing import ProcessTimeMiddleware, add_process_time_header

TimingMiddleware = Literal["base_http", "pure_asgi"]


def create_app(
    *, timing_middleware: TimingMiddleware = "base_http", settings: Settings | None = None
) -> FastAPI:
    """The demo app; ``timing_middleware`` picks the pitfall or the twin of the middleware pair.

    :param settings: where the data lives; None reads ``DATABASE_URL``/``REDIS_URL`` at startup.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = await open_resources(settings or Settings.from_env())
        app.state.demo = resources
        try:
            yield
        finally:
            await close_resources(resources)

    app = FastAPI(
        title="fastprof demo: each pitfall next to its fix",
        description="`/pitfall/...` routes and their `/fixed/...` twins; see `GET /`.",
        lifespan=lifespan,
    )
    for router in ROUTERS:
        app.include_router(router)
    if timing_middleware == "base_http":
        # Guide 001's timing middleware, as it shows it: a BaseHTTPMiddleware around every route.
        app.middleware("http")(add_process_time_header)
    elif timing_middleware == "pure_asgi":
        app.add_middleware(ProcessTimeMiddleware)
    else:
        raise ValueError(
            f"timing_middleware must be 'base_http' or 'pure_asgi', not {timing_middleware!r}"
        )
    return app


app = create_app()
fixed_app = create_app(timing_middleware="pure_asgi")
