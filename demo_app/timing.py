"""The X-Process-Time header, two ways: guide 001's ``@app.middleware("http")`` and pure ASGI.

``@app.middleware("http")`` wraps the function in Starlette's ``BaseHTTPMiddleware``, which runs
the rest of the app in a separate task and streams the response through a memory channel on
every request (and keeps context variables set downstream from reaching it). The pure ASGI
version adds the same header by wrapping ``send``; nothing else changes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Process-Time"


# The pitfall: registered with app.middleware("http")(add_process_time_header), as guide 001
# (and 003) show it.
async def add_process_time_header(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start_time = time.perf_counter()
    response = await call_next(request)
    response.headers[HEADER] = f"{time.perf_counter() - start_time:.6f}"
    return response


class ProcessTimeMiddleware:
    """The twin: the same header from a pure ASGI middleware (as starlette's gzip is written)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start_time = time.perf_counter()

        async def send_with_time(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append(HEADER, f"{time.perf_counter() - start_time:.6f}")
            await send(message)

        await self.app(scope, receive, send_with_time)
