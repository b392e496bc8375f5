"""A real uvicorn server, in a thread of the test process, for the load client's tests.

Every request is logged (arrival time, client port, method, path, query, headers, body) so that
tests can check what the server saw; tests tag their requests with a ``tag`` query parameter
and read back only their own entries.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

CHUNKS = [b"part-%d;" % i for i in range(5)]


@dataclass
class Server:
    host: str
    port: int
    log: list[dict[str, Any]] = field(default_factory=list)
    open_connections: Callable[[], int] = lambda: 0

    def seen(self, tag: str) -> list[dict[str, Any]]:
        """The requests the server received with ``?tag=<tag>``, in arrival order."""
        return [entry for entry in list(self.log) if entry["query"].get("tag") == tag]


def build_app(log: list[dict[str, Any]]) -> Starlette:
    async def record(request: Request) -> None:
        body = await request.body()
        client = request.client
        log.append(
            {
                "time": time.perf_counter(),
                "port": client.port if client else None,
                "method": request.method,
                "path": request.url.path,
                "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
                "raw_query": request.url.query,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": body,
            }
        )

    async def plain(request: Request) -> Response:
        await record(request)
        return JSONResponse({"ok": True})

    async def stream(request: Request) -> Response:
        await record(request)
        status = int(request.query_params.get("status", "200"))

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in CHUNKS:
                yield chunk
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), status_code=status, media_type="text/plain")

    async def fail(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("kaboom " + "x" * 300, status_code=500)

    async def slow(request: Request) -> Response:
        await record(request)
        await asyncio.sleep(float(request.query_params.get("s", "1")))
        return JSONResponse({"slept": True})

    async def close(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("bye", headers={"connection": "close"})

    async def status(request: Request) -> Response:
        await record(request)
        return Response(b"", status_code=int(request.path_params["code"]))

    async def echo(request: Request) -> Response:
        await record(request)
        return JSONResponse({"method": request.method, "length": len(log[-1]["body"])})

    return Starlette(
        routes=[
            Route("/json", plain),
            Route("/stream", stream),
            Route("/fail", fail),
            Route("/slow", slow),
            Route("/close", close),
            Route("/status/{code:int}", status),
            Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
        ]
    )


@pytest.fixture(scope="module")  # stopped before other modules run: no stray thread
def server() -> Iterator[Server]:
    log: list[dict[str, Any]] = []
    config = uvicorn.Config(
        build_app(log),
        host="127.0.0.1",
        port=0,
        loop="asyncio",
        http="h11",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=1,  # idle connections closed after 1 s: a test replays a longer gap
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, name="load-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            instance.should_exit = True
            pytest.fail("the test server did not start")
        time.sleep(0.02)
    port = instance.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(
            "127.0.0.1", port, log, open_connections=lambda: len(instance.server_state.connections)
        )
    finally:
        instance.should_exit = True
        thread.join(10)
