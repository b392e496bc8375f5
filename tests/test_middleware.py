from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from fastprof import ConfigError, FastprofMiddleware, ProfileStore

LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)
TOKEN = "s3cret-token-123"


def cpu(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/work")
    async def work(ms: float = 0) -> dict[str, str]:
        cpu(ms / 1000)
        return {"ok": "yes"}

    @app.get("/sync")
    def sync_work() -> dict[str, str]:
        # 100 ms: a signal sampler ticks about once per GIL switch interval (5 ms) while a
        # worker thread computes, and a busy machine stretches that further
        cpu(0.1)
        return {"ok": "sync"}

    @app.get("/fail")
    async def fail() -> None:
        raise HTTPException(status_code=503, detail="down")

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError("boom from the app")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                await asyncio.sleep(0)
                yield f"chunk-{i};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app


@pytest.fixture
def wrap() -> Iterator[Any]:
    made: list[FastprofMiddleware] = []

    def build(app: FastAPI | None = None, **options: Any) -> FastprofMiddleware:
        mw = FastprofMiddleware(app or make_app(), **options)
        made.append(mw)
        return mw

    yield build
    for mw in made:
        mw.close()


async def get(
    app: Any, url: str, *, client: tuple[str, int] = LOOPBACK, **kwargs: Any
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(url, **kwargs)


# -- pass-through and idleness ------------------------------------------------------------


async def test_default_is_idle_and_returns_the_same_response(wrap: Any) -> None:
    app = make_app()
    mw = wrap(app)
    assert mw._active is False
    bare, through = await get(app, "/items/3"), await get(mw, "/items/3")
    assert (through.status_code, through.content) == (bare.status_code, bare.content)
    assert dict(through.headers) == dict(bare.headers)
    assert not mw.store.profiles and not mw.store.requests


async def test_disabled_passes_through_even_with_triggers(wrap: Any) -> None:
    mw = wrap(sample_rate=1.0, timing=True, enabled=False)
    assert (await get(mw, "/items/1")).json() == {"item_id": 1}
    assert not mw.store.profiles and not mw.store.requests


# -- triggers -----------------------------------------------------------------------------


async def test_header_trigger_from_loopback_keeps_a_profile_and_names_it(wrap: Any) -> None:
    mw = wrap(trigger_header="x-fastprof")
    plain = await get(mw, "/work?ms=5")
    assert "x-fastprof-profile" not in plain.headers and not mw.store.profiles
    asked = await get(mw, "/work?ms=5", headers={"x-fastprof": "1"})
    assert asked.json() == {"ok": "yes"}
    (record,) = mw.store.profiles
    assert record.trigger == "header"
    assert asked.headers["x-fastprof-profile"] == record.id
    assert record.route == "/work" and record.method == "GET" and record.status == 200
    assert "work" in record.tree.functions()


async def test_header_trigger_value_zero_does_not_count(wrap: Any) -> None:
    mw = wrap(trigger_header="x-fastprof")
    await get(mw, "/work", headers={"x-fastprof": "0"})
    assert not mw.store.profiles


async def test_query_trigger(wrap: Any) -> None:
    mw = wrap(trigger_query="profile")
    await get(mw, "/work?profile=0")
    assert not mw.store.profiles
    response = await get(mw, "/work?profile=1")
    (record,) = mw.store.profiles
    assert record.trigger == "query" and record.query == "profile=1"
    assert response.headers["x-fastprof-profile"] == record.id


async def test_remote_trigger_without_configured_token_is_ignored_and_reveals_nothing(
    wrap: Any,
) -> None:
    mw = wrap(trigger_header="x-fastprof", trigger_query="profile")
    bare = await get(make_app(), "/work", client=REMOTE)
    response = await get(
        mw, "/work?profile=1", client=REMOTE, headers={"x-fastprof": "1", "x-fastprof-token": "x"}
    )
    assert not mw.store.profiles
    assert dict(response.headers) == dict(bare.headers)


@pytest.mark.parametrize(
    ("url", "headers", "kept"),
    [
        ("/work", {"x-fastprof": "1", "x-fastprof-token": TOKEN}, True),
        ("/work?profile=1&fastprof_token=" + TOKEN, {}, True),
        ("/work", {"x-fastprof": "1", "x-fastprof-token": "wrong-token-000"}, False),
        ("/work?profile=1&fastprof_token=wrong-token-000", {}, False),
        ("/work", {"x-fastprof": "1"}, False),
        ("/work", {"x-fastprof-token": TOKEN}, False),  # a token alone asks for nothing
    ],
)
async def test_remote_trigger_needs_the_token(
    wrap: Any, url: str, headers: dict[str, str], kept: bool
) -> None:
    mw = wrap(trigger_header="x-fastprof", trigger_query="profile", token=TOKEN)
    response = await get(mw, url, client=REMOTE, headers=headers)
    assert response.status_code == 200
    assert bool(mw.store.profiles) is kept
    assert ("x-fastprof-profile" in response.headers) is kept


async def test_loopback_trigger_works_with_a_token_configured(wrap: Any) -> None:
    mw = wrap(trigger_header="x-fastprof", token=TOKEN)
    await get(mw, "/work", headers={"x-fastprof": "1"})
    assert len(mw.store.profiles) == 1


async def test_sample_rate_profiles_that_share(wrap: Any) -> None:
    mw = wrap(sample_rate=0.25)
    draws = iter([0.1, 0.3, 0.24, 0.99, 0.25, 0.0])
    mw._random = lambda: next(draws)
    for _ in range(6):
        await get(mw, "/work")
    assert [r.trigger for r in mw.store.profiles] == ["sample"] * 3


@pytest.mark.parametrize("rate", [0.0, 1.0])
async def test_sample_rate_bounds(wrap: Any, rate: float) -> None:
    mw = wrap(sample_rate=rate)
    for _ in range(5):
        await get(mw, "/work")
    assert len(mw.store.profiles) == (5 if rate else 0)


async def test_slow_threshold_keeps_only_slow_requests_without_full_profiling(wrap: Any) -> None:
    # wide margins: a loaded machine makes the fast request slower
    mw = wrap(slow_ms=250, continuous_interval=0.002)
    assert mw.backend.name == "pyinstrument" and mw.sampler is not None
    await get(mw, "/work?ms=0")
    assert not mw.store.profiles
    await get(mw, "/work?ms=300")
    (record,) = mw.store.profiles
    assert record.trigger == "slow" and record.backend == "continuous"
    assert record.duration >= 0.25
    assert "work" in record.tree.functions()


async def test_slow_threshold_applies_to_sampled_requests(wrap: Any) -> None:
    mw = wrap(sample_rate=1.0, slow_ms=250)
    await get(mw, "/work?ms=0")
    await get(mw, "/work?ms=300")
    (record,) = mw.store.profiles
    # by default sampled requests get the signal sampler at `interval` (1 ms)
    assert record.trigger == "sample" and record.backend == "continuous"
    assert record.duration >= 0.25
    assert "work" in record.tree.functions()
    assert record.tree.root.samples >= 50


async def test_an_explicit_backend_profiles_sampled_requests(wrap: Any) -> None:
    mw = wrap(sample_rate=1.0, backend="pyinstrument")
    await get(mw, "/work?ms=20")
    (record,) = mw.store.profiles
    assert record.backend == "pyinstrument" and "work" in record.tree.functions()


async def test_errors_are_kept_even_when_fast(wrap: Any) -> None:
    mw = wrap(slow_ms=10_000)
    response = await get(mw, "/fail")
    assert response.status_code == 503
    (record,) = mw.store.profiles
    assert (record.trigger, record.status) == ("error", 503)


async def test_errors_can_be_dropped(wrap: Any) -> None:
    mw = wrap(slow_ms=10_000, keep_errors=False)
    await get(mw, "/fail")
    assert not mw.store.profiles


async def test_include_and_exclude_patterns(wrap: Any) -> None:
    mw = wrap(sample_rate=1.0, include=["/work*", "/items/*"], exclude=["/items/9*"])
    for url in ["/work", "/health", "/items/1", "/items/99"]:
        assert (await get(mw, url)).status_code == 200
    assert [r.path for r in mw.store.profiles] == ["/work", "/items/1"]


# -- timing ---------------------------------------------------------------------------------


async def test_timing_records_every_request_with_its_route_template(wrap: Any) -> None:
    seen = []
    mw = wrap(timing=True, on_request=seen.append)
    await get(mw, "/items/42")
    await get(mw, "/fail")
    await get(mw, "/nowhere")
    first, failed, missing = mw.store.requests
    assert (first.method, first.route, first.path, first.status) == (
        "GET",
        "/items/{item_id}",
        "/items/42",
        200,
    )
    assert first.response_bytes == len(b'{"item_id":42}')
    assert first.duration > 0 and first.key == "GET /items/{item_id}"
    assert failed.status == 503 and missing.status == 404
    assert seen == list(mw.store.requests)
    assert not mw.store.profiles


async def test_timing_of_a_mounted_app_includes_the_mount_prefix(wrap: Any) -> None:
    outer = FastAPI()
    outer.mount("/api", make_app())
    mw = wrap(outer, timing=True)
    await get(mw, "/api/items/5")
    (record,) = mw.store.requests
    assert record.route == "/api/items/{item_id}"


# -- what passes through untouched ----------------------------------------------------------


async def test_streaming_response_passes_through_and_is_counted(wrap: Any) -> None:
    mw = wrap(sample_rate=1.0, timing=True)
    response = await get(mw, "/stream")
    assert response.text == "".join(f"chunk-{i};" for i in range(5))
    assert mw.store.requests[0].response_bytes == len(response.content)
    assert mw.store.profiles[0].status == 200


async def test_background_tasks_still_run(wrap: Any) -> None:
    app = make_app()
    done: list[str] = []

    @app.get("/bg")
    async def with_background(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(done.append, "ran")
        return {}

    mw = wrap(app, sample_rate=1.0)
    assert (await get(mw, "/bg")).status_code == 200
    assert done == ["ran"]


def test_websocket_and_lifespan_pass_through(wrap: Any) -> None:
    events: list[str] = []
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        text = await ws.receive_text()
        await ws.send_text(text.upper())
        await ws.close()

    mw = wrap(app, sample_rate=1.0, timing=True, trigger_header="x-fastprof")
    with TestClient(mw) as client:
        assert events == ["startup"]
        with client.websocket_connect("/ws", headers={"x-fastprof": "1"}) as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "HELLO"
    assert events == ["startup", "shutdown"]
    assert not mw.store.profiles and not mw.store.requests


async def test_app_exceptions_propagate_unchanged_and_are_recorded(wrap: Any) -> None:
    mw = wrap(sample_rate=1.0, timing=True)
    with pytest.raises(ValueError, match="boom from the app"):
        await get(mw, "/boom")
    (record,) = mw.store.profiles
    assert record.error == "ValueError" and record.status == 500
    assert mw.store.requests[0].status == 500


# -- fastprof's own failures never fail the request ----------------------------------------


@pytest.mark.parametrize("where", ["start", "stop", "store", "trigger", "tree"])
async def test_internal_failure_is_logged_and_the_request_proceeds(
    wrap: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    mw = wrap(sample_rate=1.0, backend="pyinstrument", trigger_header="x-fastprof", timing=True)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected failure")

    if where == "start":
        monkeypatch.setattr(mw.backend, "start", broken)
    elif where == "stop":
        real_start = mw.backend.start

        def start(*args: Any, **kwargs: Any) -> Any:
            capture = real_start(*args, **kwargs)
            real_stop = capture.stop

            def stop() -> Any:
                real_stop()
                raise RuntimeError("injected failure")

            capture.stop = stop  # type: ignore[method-assign]
            return capture

        monkeypatch.setattr(mw.backend, "start", start)
    elif where == "store":
        monkeypatch.setattr(mw.store, "add_profile", broken)
    elif where == "trigger":
        monkeypatch.setattr(mw, "_trigger", broken)
    else:
        monkeypatch.setattr("fastprof.backends.pyinstrument._build", broken)

    bare = await get(make_app(), "/items/7")
    with caplog.at_level(logging.ERROR, logger="fastprof"):
        response = await get(mw, "/items/7")
    assert (response.status_code, response.content) == (bare.status_code, bare.content)
    if where != "tree":  # the tree is built lazily, only when someone reads it
        assert "injected failure" in caplog.text
        assert "the request continues" in caplog.text


# -- threadpool work -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [None, "pyinstrument"])
async def test_def_endpoint_work_shows_in_its_request_tree(wrap: Any, backend: str | None) -> None:
    mw = wrap(sample_rate=1.0, backend=backend)
    # The first hand-over of a process imports AnyIO's thread machinery on the loop thread
    # while the worker computes; on a busy machine the 1 kHz sampler's ticks then went to the
    # imports (seen 1 run in 5 to 12). The second request is the one judged.
    await get(mw, "/sync")
    await get(mw, "/sync")
    record = list(mw.store.profiles)[-1]
    tree = record.tree
    (node,) = tree.find("sync_work")
    assert tree.find("cpu")[0].self_time > 0
    if backend == "pyinstrument":  # a 1 ms profiler of the thread: the 100 ms are all there
        assert node.total >= 0.07
    # the thread's time replaced the request's waiting for it, not added to it
    assert tree.total <= record.duration * 1.1


# -- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "nope"}, "backend='nope' is not a backend; use one of 'continuous'"),
        ({"backend": int}, "backend=<class 'int'> is not a backend"),
        ({"sample_rate": 1.5}, "sample_rate=1.5 is out of range; use a number from 0.0 to 1.0"),
        ({"sample_rate": "0.1"}, "sample_rate='0.1' is out of range"),
        ({"interval": 0}, "interval=0 is not valid; use seconds between 0 and 1"),
        ({"continuous_interval": -1}, "continuous_interval=-1 is not valid"),
        ({"slow_ms": -5}, "slow_ms=-5 is not valid; use None or a number of milliseconds"),
        ({"trigger_header": "bad header"}, "trigger_header='bad header' is not valid"),
        ({"trigger_query": ""}, "trigger_query='' is not valid"),
        ({"token": "short"}, "token must be None or a string of at least 8 characters"),
        ({"token": 12345678}, "token must be None or a string of at least 8 characters (got int"),
        ({"timing": "yes"}, "timing='yes' is not valid; use True or False"),
        ({"keep_errors": 1}, "keep_errors=1 is not valid; use True or False"),
        ({"include": "/api/*"}, "include='/api/*' is not valid; use a list of glob patterns"),
        ({"exclude": ["health"]}, "exclude pattern 'health' is not valid"),
        ({"max_profiles": 0}, "max_profiles=0 is not valid; use an integer >= 1"),
        ({"max_directory_bytes": -1}, "max_directory_bytes=-1 is not valid"),
        ({"on_request": "print"}, "on_request='print' is not callable"),
        ({"store": ProfileStore(), "directory": "/tmp/x"}, "pass either store= or directory="),
    ],
)
def test_bad_configuration_fails_at_startup_naming_the_parameter(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        FastprofMiddleware(make_app(), **options)
    assert str(info.value).startswith("FastprofMiddleware: ")
    assert message in str(info.value)


def test_bad_configuration_through_add_middleware_fails_when_the_app_starts() -> None:
    app = make_app()
    app.add_middleware(FastprofMiddleware, sample_rate=2)
    with pytest.raises(ConfigError, match="sample_rate=2"), TestClient(app):
        pass


def test_directory_that_cannot_be_created(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot be used for profiles"):
        FastprofMiddleware(make_app(), directory=str(blocker / "sub"))


# -- recording traffic ---------------------------------------------------------------------


async def test_record_to_writes_replayable_jsonl(wrap: Any, tmp_path: Any) -> None:
    import base64

    import orjson

    app = make_app()

    @app.post("/echo")
    async def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    target = tmp_path / "traffic.jsonl"
    mw = wrap(app, record_to=str(target), record_body_bytes=16)
    transport = httpx.ASGITransport(app=mw, client=LOOPBACK)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/items/3?x=1", headers={"authorization": "Bearer secret"})
        small = await client.post("/echo", json={"a": 1})
        big = await client.post("/echo", json={"data": "y" * 100})
    assert small.json() == {"a": 1} and big.json() == {"data": "y" * 100}
    mw.close()
    first, second, third = (orjson.loads(line) for line in target.read_text().splitlines())
    assert (first["method"], first["path"], first["query"], first["status"]) == (
        "GET",
        "/items/3",
        "x=1",
        200,
    )
    assert "authorization" not in first["headers"]  # never unless asked for
    assert "body_b64" not in first and first["duration"] > 0 and first["t"] > 0
    assert base64.b64decode(second["body_b64"]) == b'{"a":1}'
    assert second["headers"]["content-type"] == "application/json"
    assert second["body_truncated"] is False
    assert len(base64.b64decode(third["body_b64"])) == 16 and third["body_truncated"] is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"record_to": 5}, "record_to=5 is not valid"),
        ({"record_headers": "accept"}, "record_headers='accept' is not valid"),
        ({"record_body_bytes": -1}, "record_body_bytes=-1 is not valid"),
        ({"detect": "n_plus_one"}, "detect='n_plus_one' is not valid; use True (all), False"),
        ({"detect": ["nope"]}, "detector 'nope' is not known"),
        ({"detector_options": {"nope": {}}}, "names unknown detector(s) nope"),
        ({"detector_options": {"n_plus_one": 3}}, "detector_options must be a dict"),
        ({"on_finding": 1}, "on_finding=1 is not callable"),
    ],
)
def test_more_bad_configuration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FastprofMiddleware(make_app(), **options)
    assert message in str(info.value)


# -- one class per busy configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "served_by"),
    [
        ({"timing": True}, "_TimingMiddleware"),
        ({"trigger_header": "x-fastprof"}, "_AskedMiddleware"),
        ({"trigger_query": "fastprof", "token": "0123456789"}, "_AskedMiddleware"),
        ({"sample_rate": 0.01}, "_SampleRateMiddleware"),
        ({"backend": "continuous"}, "_SampledMiddleware"),  # after its first request
        ({"timing": True, "sample_rate": 0.01}, "FastprofMiddleware"),
        ({"sample_rate": 0.01, "trigger_header": "x-fastprof"}, "FastprofMiddleware"),
        ({"timing": True, "backend": "continuous"}, "FastprofMiddleware"),
        ({"timing": True, "detect": True}, "FastprofMiddleware"),
        ({"timing": True, "include": ["/items/*"]}, "FastprofMiddleware"),
        ({"timing": True, "enabled": False}, "FastprofMiddleware"),
    ],
)
async def test_each_busy_configuration_is_served_by_a_class_of_its_own(
    wrap: Any, options: dict[str, Any], served_by: str
) -> None:
    """What every request runs is all its __call__ holds (docs/performance.md); the
    behaviour is the one the options ask for, which the other tests here check."""
    mw = wrap(**options)
    bare = await get(make_app(), "/items/7")
    response = await get(mw, "/items/7")
    assert (response.status_code, response.content) == (bare.status_code, bare.content)
    assert isinstance(mw, FastprofMiddleware)
    if served_by == "_SampledMiddleware" and not mw._passive:
        pytest.skip("the signal timer is not available here: requests register instead")
    assert type(mw).__name__ == served_by
