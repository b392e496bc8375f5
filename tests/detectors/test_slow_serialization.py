from __future__ import annotations

import asyncio
import importlib.metadata
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import orjson
import pytest
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.responses import JSONResponse as StarletteJSONResponse

from fastprof import FastprofMiddleware
from fastprof._context import current_request
from fastprof.advice import installed
from fastprof.detectors.slow_serialization import HOOKS, SlowSerializationDetector, _sample
from fastprof.findings import Finding
from fastprof.guard import guard
from fastprof.record import RequestState

ORIGINALS = (
    (json, "dumps", json.dumps),
    (StarletteJSONResponse, "render", StarletteJSONResponse.render),
    (fastapi.routing, "serialize_response", fastapi.routing.serialize_response),
)
THIS = str(Path(__file__))


@pytest.fixture(autouse=True)
def hooks_restored() -> Iterator[None]:
    yield
    left = [
        f"{owner.__name__}.{name}"
        for owner, name, orig in ORIGINALS
        if getattr(owner, name) is not orig
    ]
    assert not left and not HOOKS.installed, f"slow_serialization left patched: {left}"


def line_of(marker: str) -> int:
    """The line of this file that carries ``# <marker>``."""
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no line marked {marker!r}")


class Row(BaseModel):
    id: int
    name: str
    tags: list[str]


def rows(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"row {i}", "tags": ["a", "b"]} for i in range(count)]


BIG = 2000  # ~80 KB of JSON
SMALL = 10  # ~400 bytes


class FastJSONResponse(JSONResponse):
    """A JSONResponse with its own render (what ORJSONResponse does): not the slow path."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/no-model")
    async def no_model():
        data = rows(BIG)
        return data  # no-model-return

    @app.get("/no-model-sync")
    def no_model_sync():
        return rows(BIG)  # sync-return

    @app.get("/two-returns")
    async def two_returns(empty: bool = False):  # two-returns-def
        if empty:
            return []
        return rows(BIG)

    @app.get("/return-type")
    async def return_type() -> list[Row]:
        return [Row(**r) for r in rows(BIG)]

    @app.get("/response-model", response_model=list[Row])
    async def response_model() -> Any:
        return rows(BIG)

    @app.get("/model-custom-class", response_model=list[Row], response_class=JSONResponse)
    async def model_custom_class() -> Any:
        return rows(BIG)  # custom-class-return

    @app.get("/small")
    async def small():
        return rows(SMALL)

    @app.get("/dumps")
    async def dumps() -> Response:
        body = json.dumps(rows(BIG))  # dumps-call
        return Response(body, media_type="application/json")

    @app.get("/json-response")
    def json_response() -> JSONResponse:
        return JSONResponse(content=rows(BIG))  # json-response-call

    @app.get("/own-render")
    async def own_render() -> Response:
        return FastJSONResponse(rows(BIG))

    return app


async def serve(
    paths: list[str], app: FastAPI | None = None, **options: Any
) -> tuple[list[Finding], list[httpx.Response]]:
    """Serve ``paths`` through the middleware with only this detector; its findings."""
    options = {"threshold_ms": 0.0, **options}
    mw = FastprofMiddleware(
        app or make_app(),
        detect=["slow_serialization"],
        detector_options={"slow_serialization": options},
    )
    responses = []
    try:
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for path in paths:
                responses.append(await client.get(path))
    finally:
        mw.close()
    assert all(r.status_code == 200 for r in responses), [r.text[:200] for r in responses]
    return list(mw.store.findings), responses


async def test_no_model_big_payload_is_reported_at_the_return() -> None:
    found, responses = await serve(["/no-model"])
    [finding] = found
    assert finding.kind == "slow_serialization"
    assert finding.route == "GET /no-model"
    assert finding.location is not None
    assert (finding.location.file, finding.location.line) == (THIS, line_of("no-model-return"))
    assert finding.location.function == "no_model"
    evidence = finding.evidence
    assert evidence["encoder"] == "jsonable_encoder + json.dumps"
    assert evidence["response_bytes"] == len(responses[0].content)
    assert evidence["encode_ms"] > 0
    assert evidence["response_model"] is False
    assert evidence["endpoint"].endswith("no_model")
    assert evidence["on_event_loop"] is True
    assert evidence["suggested_ms"] > 0 and evidence["suggested"]
    assert evidence["suggested_measured_on"] == "the whole payload"  # under sample_bytes
    assert "encode" in finding.title and "KB" in finding.title


async def test_sync_endpoint_without_model_is_reported_too() -> None:
    found, _ = await serve(["/no-model-sync"])
    [finding] = found
    assert finding.location is not None and finding.location.line == line_of("sync-return")


async def test_several_returns_point_at_the_endpoint() -> None:
    found, _ = await serve(["/two-returns"])
    [finding] = found
    assert finding.location is not None and finding.location.line == line_of("two-returns-def") - 1
    assert finding.location.function == "two_returns"


@pytest.mark.parametrize("path", ["/return-type", "/response-model", "/own-render"])
async def test_fast_paths_are_not_reported(path: str) -> None:
    found, responses = await serve([path], min_bytes=0)
    assert len(responses[0].content) > 50_000
    assert found == []


async def test_small_payload_is_not_reported() -> None:
    found, _ = await serve(["/small"])
    assert found == []


async def test_threshold_and_size_both_apply() -> None:
    found, _ = await serve(["/no-model"], threshold_ms=60_000)
    assert found == []
    found, _ = await serve(["/no-model"], min_bytes=10_000_000)
    assert found == []


async def test_stdlib_json_dumps_is_reported_at_the_call() -> None:
    found, _ = await serve(["/dumps"])
    [finding] = found
    assert finding.location is not None
    assert (finding.location.file, finding.location.line) == (THIS, line_of("dumps-call"))
    assert finding.evidence["encoder"] == "json.dumps"
    assert "response_model" not in finding.evidence


async def test_json_response_is_reported_at_the_user_line_even_in_a_worker_thread() -> None:
    found, _ = await serve(["/json-response"])
    [finding] = found
    assert finding.location is not None and finding.location.line == line_of("json-response-call")
    assert finding.evidence["encoder"] == "JSONResponse -> json.dumps"
    assert finding.evidence["on_event_loop"] is False


async def test_framework_responses_are_not_reported() -> None:
    found, responses = await serve(["/openapi.json"], min_bytes=0)
    assert responses[0].json()["openapi"]
    assert found == []


async def test_model_with_custom_response_class_gets_its_own_advice() -> None:
    found, _ = await serve(["/model-custom-class"])
    [finding] = found
    assert finding.location is not None and finding.location.line == line_of("custom-class-return")
    assert finding.evidence["response_model"] is True
    assert finding.evidence["encoder"] == "response_model serialisation + json.dumps"
    assert "response_class" in finding.advice


@pytest.fixture
def fake_fastapi_version(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    real = importlib.metadata.version

    def use(version: str | None) -> None:
        def fake(name: str) -> str:
            if name == "fastapi":
                if version is None:
                    raise importlib.metadata.PackageNotFoundError(name)
                return version
            return real(name)

        monkeypatch.setattr(importlib.metadata, "version", fake)
        installed.cache_clear()

    yield use
    installed.cache_clear()


async def test_advice_on_current_fastapi(fake_fastapi_version: Any) -> None:
    fake_fastapi_version("0.131.2")
    found, _ = await serve(["/no-model"])
    [finding] = found
    assert finding.evidence["fastapi"] == "0.131.2"
    assert "Declare the endpoint's return type" in finding.advice
    assert "FastAPI 0.131.2" in finding.advice
    assert "deprecated" in finding.advice  # ORJSONResponse: not the fix any more
    assert finding.evidence["suggested"].startswith("Pydantic")


async def test_advice_on_older_fastapi_names_orjson(fake_fastapi_version: Any) -> None:
    fake_fastapi_version("0.110.0")
    found, _ = await serve(["/no-model", "/dumps"])
    assert len(found) == 2
    for finding in found:
        assert "ORJSONResponse(data)" in finding.advice
        assert "FastAPI 0.110.0" in finding.advice
        assert "deprecated" not in finding.advice
        assert finding.evidence["suggested"] == "orjson"


async def test_suggested_path_is_timed_once_per_route_per_period() -> None:
    detector = SlowSerializationDetector(threshold_ms=0, remeasure_s=60)
    now = [1000.0]
    detector.clock = lambda: now[0]
    mw = FastprofMiddleware(make_app(), detect=[detector])
    try:
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/no-model")
            await client.get("/no-model")
            now[0] += 61
            await client.get("/no-model")
            await client.get("/dumps")
    finally:
        mw.close()
    on = [f.evidence["suggested_measured_on"] for f in mw.store.findings]
    assert on[0] == "the whole payload"
    assert on[1] == "an earlier request (the whole payload)"
    assert on[2] == "the whole payload"  # the period passed: timed again
    assert on[3] == "the whole payload"  # another route has its own measurement
    # a reused ratio still gives this request's own estimate
    first, second = list(mw.store.findings)[:2]
    ratio = first.evidence["encode_ms"] / first.evidence["suggested_ms"]
    assert second.evidence["suggested_ms"] == pytest.approx(
        second.evidence["encode_ms"] / ratio, rel=0.05, abs=0.02
    )


async def test_an_envelope_dict_is_sampled_on_its_list() -> None:
    app = FastAPI()

    @app.get("/page")
    async def page():
        return {"items": rows(BIG), "total": BIG}

    found, _ = await serve(["/page"], app=app, sample_bytes=20_000)
    [finding] = found
    sampled, whole = re.fullmatch(
        r"(\d+) KB of (\d+) KB", finding.evidence["suggested_measured_on"]
    ).groups()
    assert 10 <= int(sampled) <= 20 and int(whole) == round(
        finding.evidence["response_bytes"] / 1024
    )


async def test_unencodable_sample_leaves_the_suggestion_out() -> None:
    app = FastAPI()

    class Opaque:
        pass

    @app.get("/custom")
    async def custom() -> Response:
        payload = {"blob": "x" * 100_000, "obj": Opaque()}
        body = json.dumps(payload, default=lambda o: "opaque")
        return Response(body, media_type="application/json")

    found, _ = await serve(["/custom"], app=app)
    [finding] = found
    assert "suggested_ms" not in finding.evidence
    assert "?" in finding.advice  # the measured number it could not give


def test_hooks_are_counted_and_inert_outside_requests() -> None:
    original = json.dumps
    first, second = SlowSerializationDetector(), SlowSerializationDetector(min_bytes=10)
    first.start()
    second.start()
    first.start()  # a second start of the same detector is not counted twice
    assert json.dumps is not original
    assert HOOKS.floor == 10
    assert json.loads(json.dumps({"a": [1, 2]})) == {"a": [1, 2]}  # outside a request
    first.stop()
    assert json.dumps is not original and HOOKS.floor == 10
    second.stop()
    assert json.dumps is original
    second.stop()  # stopping again is harmless
    assert json.dumps is original


def test_outside_fastapi_a_guard_sees_json_dumps() -> None:
    data = rows(BIG)
    with guard(
        ["slow_serialization"], detector_options={"slow_serialization": {"threshold_ms": 0}}
    ) as g:
        json.dumps(data)  # guard-dumps
    [finding] = g.findings
    assert finding.location is not None and finding.location.line == line_of("guard-dumps")
    assert finding.route is not None and finding.route.startswith(f"{THIS}:")


def test_records_stay_on_their_request() -> None:
    detector = SlowSerializationDetector(threshold_ms=0, min_bytes=0)
    detector.start()
    try:
        first = RequestState("GET", "/a", 0.0)
        token = current_request.set(first)
        try:
            json.dumps(rows(SMALL))  # on-first
        finally:
            current_request.reset(token)
        json.dumps(rows(SMALL))  # outside: nowhere
        second = RequestState("GET", "/b", 0.0)
        assert detector.finish(second) == []
        [finding] = detector.finish(first)
        assert finding.location is not None and finding.location.line == line_of("on-first")
        assert detector.finish(first) == []  # finish consumes the records
    finally:
        detector.stop()


async def test_concurrent_requests_keep_their_own_records() -> None:
    app = make_app()
    mw = FastprofMiddleware(
        app,
        detect=["slow_serialization"],
        detector_options={"slow_serialization": {"threshold_ms": 0}},
    )
    try:
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await asyncio.gather(*(client.get(p) for p in ["/no-model", "/small", "/dumps"] * 3))
    finally:
        mw.close()
    routes = sorted(f.route or "" for f in mw.store.findings)
    assert routes == ["GET /dumps"] * 3 + ["GET /no-model"] * 3


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        SlowSerializationDetector(threshold_ms=-1)
    with pytest.raises(TypeError):
        SlowSerializationDetector(unknown=1)


def test_sample_cuts_lists_and_nested_documents_to_the_budget() -> None:
    flat = rows(1000)
    sample, share = _sample(flat, 100_000, 10_000)
    assert len(sample) == 100 and share == pytest.approx(0.1)
    document = {"rows": rows(2000), "meta": {"version": 1}}
    sample, share = _sample([document] * 4, 400_000, 10_000)
    [inner] = sample
    assert inner["meta"] == {"version": 1}
    # one document stands for the four; 200 of its rows are about 10 KB of its 100 KB
    assert len(inner["rows"]) == 200 and share == pytest.approx(200 / 2000 / 4)
    assert _sample(flat, 5_000, 10_000) == (flat, 1.0)  # small enough: all of it
    assert _sample("x" * 50_000, 50_000, 10_000) == ("x" * 50_000, 1.0)  # nothing to cut


async def test_a_big_document_list_is_timed_on_a_sample() -> None:
    app = FastAPI()
    document = {"rows": rows(2000)}

    @app.get("/documents")
    async def documents() -> Response:
        body = json.dumps([document] * 5)
        return Response(body, media_type="application/json")

    found, _ = await serve(["/documents"], app=app)
    [finding] = found
    sampled, whole = finding.evidence["suggested_measured_on"].split(" of ")
    assert sampled.endswith("KB") and whole.endswith("KB")
    assert float(sampled.split()[0]) <= 130 < float(whole.split()[0])
