"""middleware_overhead: BaseHTTPMiddleware layers, next to pure ASGI ones that must not count.

Middleware findings are about the whole app (route None) and are emitted when the detectors
start: at lifespan startup, or - as the corpus runner serves it - with the first request. So the
first case carries them; the later ones check that nothing is reported per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.corpus import Case


class RequestIdMiddleware(BaseHTTPMiddleware):  # expect: middleware_overhead
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["x-request-id"] = "corpus"
        return response


class TenantMiddleware(BaseHTTPMiddleware):  # expect: middleware_overhead
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.tenant = "default"
        return await call_next(request)


class ServerTimingMiddleware:
    """The pure ASGI way: not reported."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message["headers"] = [*message.get("headers", []), (b"server-timing", took)]
            await send(message)

        await self.app(scope, receive, sending)


def build() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(ServerTimingMiddleware)
    app.add_middleware(GZipMiddleware, minimum_size=1000)

    @app.middleware("http")  # expect: middleware_overhead
    async def add_process_time(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["x-process-time"] = str(time.perf_counter() - started)
        return response

    tenants = FastAPI()
    tenants.add_middleware(TenantMiddleware)

    @tenants.get("/")
    async def tenant(request: Request) -> dict[str, str]:
        return {"tenant": request.state.tenant}

    app.mount("/tenants", tenants)

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    return app


#: The kinds expected among the app-level findings (route None). The runner does not read it
#: yet: it attributes those findings to the case during which the detectors started - the
#: first one, which therefore lists the kind too.
APP_KINDS = frozenset({"middleware_overhead"})

CASES = [
    Case("/"),
    Case("/items/3"),
    Case("/tenants/"),
]
