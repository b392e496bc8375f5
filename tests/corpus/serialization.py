"""slow_serialization: big JSON responses on the slow path, and look-alikes on the fast one.

Payloads are sized so the slow path takes roughly 10-30 ms here (well past the 2 ms threshold
set in OPTIONS, short of what a loop-blocking detector would call a stall); a big encode does
hold the event loop, so event_loop_blocking is not scored on these cases.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tests.corpus import Case

ROWS = 800  # about 95 KB of JSON: jsonable_encoder takes ~10 ms
DUMPS_ROWS = 3000  # about 360 KB: the stdlib json module alone takes ~3 ms

OPTIONS: dict[str, Any] = {"detector_options": {"slow_serialization": {"threshold_ms": 2.0}}}


class Row(BaseModel):
    id: int
    name: str
    email: str
    score: float
    tags: list[str]
    active: bool


def rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"user {i}",
            "email": f"user{i}@example.com",
            "score": i * 1.5,
            "tags": ["alpha", "beta", "gamma"],
            "active": i % 2 == 0,
        }
        for i in range(count)
    ]


def build() -> FastAPI:
    app = FastAPI()

    @app.get("/no-model")
    async def no_model():
        data = rows(ROWS)
        return data  # expect: slow_serialization

    @app.get("/no-model-sync")
    def no_model_sync():
        data = rows(ROWS)
        return data  # expect: slow_serialization

    @app.get("/envelope")
    async def envelope():
        data = rows(ROWS)
        return {"items": data, "total": len(data)}  # expect: slow_serialization

    @app.get("/stdlib-json")
    async def stdlib_json() -> Response:
        data = rows(DUMPS_ROWS)
        body = json.dumps(data)  # expect: slow_serialization
        return Response(body, media_type="application/json")

    @app.get("/json-response")
    async def json_response() -> JSONResponse:
        data = rows(DUMPS_ROWS)
        return JSONResponse(content=data)  # expect: slow_serialization

    @app.get("/return-type")
    async def return_type() -> list[Row]:
        return [Row(**row) for row in rows(ROWS)]

    @app.get("/response-model", response_model=list[Row])
    async def response_model() -> Any:
        return rows(ROWS)

    @app.get("/small")
    async def small():
        return rows(10)

    @app.get("/small-json")
    async def small_json() -> Response:
        return Response(json.dumps(rows(10)), media_type="application/json")

    @app.get("/orjson")
    async def orjson_bytes() -> Response:
        return Response(orjson.dumps(rows(DUMPS_ROWS)), media_type="application/json")

    return app


_BLOCKING = frozenset({"event_loop_blocking"})
_SLOW = frozenset({"slow_serialization"})

CASES = [
    Case("/no-model", _SLOW, ignore=_BLOCKING),
    Case("/no-model-sync", _SLOW, ignore=_BLOCKING),
    Case("/envelope", _SLOW, ignore=_BLOCKING),
    Case("/stdlib-json", _SLOW, ignore=_BLOCKING),
    Case("/json-response", _SLOW, ignore=_BLOCKING),
    Case("/return-type", ignore=_BLOCKING),
    Case("/response-model", ignore=_BLOCKING),
    Case("/small"),
    Case("/small-json"),
    Case("/orjson", ignore=_BLOCKING),
]
