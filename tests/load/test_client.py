"""run_load against a real uvicorn server (tests/load/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from fastprof.load import Histogram, LoadResult, RequestSpec, loop_factory, run_load
from fastprof.load.client import _prepare
from tests.load.conftest import CHUNKS, Server


def spec(path: str, tag: str, **kwargs: object) -> RequestSpec:
    sep = "&" if "?" in path else "?"
    return RequestSpec("GET", f"{path}{sep}tag={tag}", **kwargs)  # type: ignore[arg-type]


async def test_plain_requests_are_counted_and_reuse_connections(server: Server) -> None:
    result = await run_load(
        server.host, server.port, [spec("/json", "plain")],
        concurrency=3, duration=None, requests=60, warmup=0,
    )  # fmt: skip
    assert (result.requests, result.errors, result.timeouts) == (60, 0, 0)
    assert result.status_counts == {200: 60}
    assert result.latency.count == 60
    assert result.error_samples == []
    seen = server.seen("plain")
    assert len(seen) == 60
    assert len({entry["port"] for entry in seen}) == 3  # keep-alive: one connection per worker
    assert result.duration > 0 and result.rps == pytest.approx(60 / result.duration)


async def test_requests_stops_at_the_exact_count(server: Server) -> None:
    result = await run_load(
        server.host, server.port, [spec("/json", "count")],
        concurrency=4, duration=None, requests=37, warmup=0,
    )  # fmt: skip
    assert result.requests == 37
    assert len(server.seen("count")) == 37


async def test_duration_bounds_the_run_and_warmup_is_not_counted(server: Server) -> None:
    started = time.perf_counter()
    result = await run_load(
        server.host, server.port, [spec("/json", "warm")],
        concurrency=2, duration=0.4, warmup=0.3,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert 0.65 <= elapsed < 2.0
    assert 0.35 <= result.duration < 1.0
    assert result.requests > 0
    assert len(server.seen("warm")) > result.requests  # the warm-up requests were sent too


async def test_a_request_slower_than_the_warmup_counts(server: Server) -> None:
    # Every request of this route outlasts the warm-up, and times out after it: without
    # counting them the route would show nothing at all.
    result = await run_load(
        server.host, server.port, [spec("/slow?s=1.5", "late")],
        concurrency=2, duration=0.2, warmup=0.05, timeout=0.4,
    )  # fmt: skip
    assert (result.requests, result.timeouts, result.status_counts) == (2, 2, {0: 2})
    # With requests=, such late ones take from the count and never exceed it.
    result = await run_load(
        server.host, server.port, [spec("/slow?s=0.2", "late-count")],
        concurrency=4, duration=None, requests=3, warmup=0.1,
    )  # fmt: skip
    assert result.requests == 3 and result.latency.count == 3
    assert result.latency.percentile(50) >= 0.2
    assert len(server.seen("late-count")) >= 4  # the 4 of the warm-up, maybe 1 sent after


async def test_chunked_responses_are_parsed_on_keep_alive_connections(server: Server) -> None:
    result = await run_load(
        server.host, server.port, [spec("/stream", "chunked")],
        concurrency=2, duration=None, requests=20, warmup=0, timeout=2,
    )  # fmt: skip
    assert result.status_counts == {200: 20} and result.errors == 0
    # Had the parser missed the end of a chunked body, the next request on that connection
    # would have failed or timed out; each worker kept its one connection throughout.
    assert len({entry["port"] for entry in server.seen("chunked")}) == 2


async def test_error_status_is_an_error_with_a_sample_of_the_body(server: Server) -> None:
    result = await run_load(
        server.host, server.port, [spec("/fail", "fail"), spec("/stream?status=503", "fail")],
        concurrency=1, duration=None, requests=30, warmup=0,
    )  # fmt: skip
    assert result.errors == 30
    assert set(result.status_counts) == {500, 503}
    assert sum(result.status_counts.values()) == 30
    assert result.latency.count == 30  # answered errors still have a latency
    samples = sorted(result.error_samples)
    assert len(samples) == 2  # distinct descriptions only
    plain = next(s for s in samples if "-> 500" in s)
    assert plain.startswith("GET /fail?tag=fail -> 500: kaboom xxx")
    assert plain.endswith(": " + ("kaboom " + "x" * 300)[:200])
    chunked = next(s for s in samples if "-> 503" in s)
    assert chunked.endswith(": " + b"".join(CHUNKS).decode())  # de-chunked


async def test_expect_status(server: Server) -> None:
    result = await run_load(
        server.host, server.port,
        [spec("/status/201", "expect", expect_status=201), spec("/json", "expect", weight=0)],
        concurrency=1, duration=None, requests=5, warmup=0,
    )  # fmt: skip
    assert (result.errors, result.status_counts) == (0, {201: 5})

    result = await run_load(
        server.host, server.port, [spec("/json", "expect", expect_status=201)],
        concurrency=1, duration=None, requests=5, warmup=0,
    )  # fmt: skip
    assert (result.errors, result.status_counts) == (5, {200: 5})
    assert result.error_samples == ['GET /json?tag=expect -> 200: {"ok":true}']

    # Without expect_status, 4xx and 5xx are errors and the rest is not.
    result = await run_load(
        server.host, server.port,
        [spec("/status/404", "expect"), spec("/status/302", "expect"), spec("/status/204", "x")],
        concurrency=1, duration=None, requests=60, warmup=0,
    )  # fmt: skip
    assert result.errors == result.status_counts[404]
    assert set(result.status_counts) == {404, 302, 204}


async def test_timeouts_are_counted_and_the_run_moves_on(server: Server) -> None:
    started = time.perf_counter()
    result = await run_load(
        server.host, server.port, [spec("/slow?s=1.5", "timeout")],
        concurrency=2, duration=None, requests=2, warmup=0, timeout=0.3,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert 0.3 <= elapsed < 1.2
    assert (result.requests, result.errors, result.timeouts) == (2, 2, 2)
    assert result.status_counts == {0: 2}
    assert result.latency.count == 0
    assert result.error_samples == ["GET /slow?s=1.5&tag=timeout: timeout after 0.3s"]


async def test_connection_refused(server: Server) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = await run_load(
        "127.0.0.1", port, [RequestSpec("GET", "/")],
        concurrency=1, duration=None, requests=3, warmup=0, timeout=1,
    )  # fmt: skip
    assert (result.requests, result.errors, result.status_counts) == (3, 3, {0: 3})
    assert result.error_samples == ["GET /: connection refused"]


async def test_connection_close_makes_the_client_reconnect(server: Server) -> None:
    result = await run_load(
        server.host, server.port, [spec("/close", "close")],
        concurrency=1, duration=None, requests=6, warmup=0,
    )  # fmt: skip
    assert (result.status_counts, result.errors) == ({200: 6}, 0)
    assert len({entry["port"] for entry in server.seen("close")}) == 6


async def test_weights_set_the_mix(server: Server) -> None:
    result = await run_load(
        server.host, server.port,
        [spec("/json", "weights", weight=3.0), spec("/status/202", "weights", weight=1.0)],
        concurrency=4, duration=None, requests=800, warmup=0,
    )  # fmt: skip
    share = result.status_counts[200] / 800
    assert 0.68 <= share <= 0.82  # 0.75 expected; the bounds are about 4 standard deviations


async def test_rate_paces_requests_open_loop(server: Server) -> None:
    result = await run_load(
        server.host, server.port, [spec("/json", "rate")],
        concurrency=4, duration=1.0, rate=50, warmup=0,
    )  # fmt: skip
    assert 45 <= result.requests <= 55
    times = [entry["time"] for entry in server.seen("rate")]
    assert 45 <= len(times) <= 55
    span = times[-1] - times[0]
    assert 0.85 <= span <= 1.2  # spread over the second, not sent in a burst
    first_half = sum(1 for t in times if t - times[0] < 0.5)
    assert 18 <= first_half <= 32


async def test_open_loop_latency_counts_queueing_coordinated_omission(server: Server) -> None:
    # One connection, a 50 ms route, 40 req/s due: the server keeps up with only 20 req/s, so
    # due requests queue up. Their latency runs from when they were due, and grows.
    result = await run_load(
        server.host, server.port, [spec("/slow?s=0.05", "omission")],
        concurrency=1, duration=0.5, rate=40, warmup=0, timeout=5,
    )  # fmt: skip
    assert result.requests == 20
    assert result.latency.max is not None and result.latency.max >= 0.3
    closed = await run_load(
        server.host, server.port, [spec("/slow?s=0.05", "omission")],
        concurrency=1, duration=None, requests=5, warmup=0, timeout=5,
    )  # fmt: skip
    assert closed.latency.max < 0.3


async def test_on_progress_reports_counted_requests(server: Server) -> None:
    seen: list[int] = []
    result = await run_load(
        server.host, server.port, [spec("/slow?s=0.02", "progress")],
        concurrency=2, duration=0.5, warmup=0, on_progress=seen.append,
    )  # fmt: skip
    assert len(seen) >= 3
    assert seen == sorted(seen)
    assert seen[-1] == result.requests


async def test_bodies_and_headers_reach_the_server(server: Server) -> None:
    body = b'{"name": "x"}'
    result = await run_load(
        server.host, server.port,
        [RequestSpec("POST", "/echo/a b/é?tag=body&q=1", headers=(("X-Test", "yes"),
                     ("Content-Length", "999")), body=body)],
        concurrency=1, duration=None, requests=2, warmup=0,
    )  # fmt: skip
    assert result.status_counts == {200: 2}
    (first, _) = server.seen("body")
    assert first["method"] == "POST" and first["body"] == body
    assert first["path"] == "/echo/a b/é"
    assert first["headers"]["x-test"] == "yes"
    assert first["headers"]["content-length"] == str(len(body))
    assert first["headers"]["host"] == f"{server.host}:{server.port}"


async def test_cancelling_the_run_closes_every_connection(server: Server) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            run_load(server.host, server.port, [spec("/slow?s=0.05", "cancel")],
                     concurrency=4, duration=10, warmup=0),
            0.3,
        )  # fmt: skip
    assert len(server.seen("cancel")) >= 4
    # The server would keep an idle connection for 1 s; closed ones are gone at once.
    deadline = time.perf_counter() + 0.5
    while server.open_connections() and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    assert server.open_connections() == 0


async def test_an_exception_in_on_progress_stops_the_run(server: Server) -> None:
    def boom(count: int) -> None:
        raise RuntimeError(f"progress {count}")

    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="progress"):
        await run_load(
            server.host, server.port, [spec("/json", "boom")],
            concurrency=2, duration=5, warmup=0, on_progress=boom,
        )  # fmt: skip
    assert time.perf_counter() - started < 1.5


def test_to_dict_is_json_and_complete() -> None:
    histogram = Histogram()
    for ms in (1, 2, 3, 4, 100):
        histogram.record(ms / 1e3)
    result = LoadResult(
        requests=6, errors=1, duration=2.0, latency=histogram,
        status_counts={200: 5, 0: 1}, error_samples=["GET /: connection refused"], timeouts=0,
    )  # fmt: skip
    data = json.loads(json.dumps(result.to_dict()))
    assert data["rps"] == 3.0 and data["requests"] == 6 and data["errors"] == 1
    assert data["status_counts"] == {"0": 1, "200": 5}
    assert data["latency_ms"]["p50"] == pytest.approx(3, rel=0.01)
    assert data["latency_ms"]["max"] == pytest.approx(100, rel=1e-9)
    assert set(data["latency_ms"]) == {"p50", "p90", "p99", "max", "mean"}
    assert set(data) == {
        "requests", "errors", "rps", "duration", "latency_ms", "status_counts",
        "error_samples", "timeouts",
    }  # fmt: skip


def test_request_bytes() -> None:
    prepared = _prepare(RequestSpec("get", "/a b?x=%20&y=é"), "h:1")
    assert prepared.data == b"GET /a%20b?x=%20&y=%C3%A9 HTTP/1.1\r\nHost: h:1\r\n\r\n"
    prepared = _prepare(RequestSpec("PUT", "/", headers=(("Host", "other"),)), "h:1")
    assert prepared.data == b"PUT / HTTP/1.1\r\nHost: other\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(ValueError, match="invalid header"):
        _prepare(RequestSpec("GET", "/", headers=(("X", "a\r\nEvil: 1"),)), "h:1")
    with pytest.raises(ValueError, match="path must start"):
        _prepare(RequestSpec("GET", "http://x/"), "h:1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration": None}, "give duration or requests"),
        ({"concurrency": 0}, "concurrency"),
        ({"rate": 0}, "rate"),
        ({"requests": 0}, "requests"),
        ({"timeout": 0}, "timeout"),
        ({"specs": []}, "no request specs"),
        ({"specs": [RequestSpec("GET", "/", weight=0)]}, "weight > 0"),
        ({"specs": [RequestSpec("GET", "/", weight=-1)]}, "weights"),
    ],
)
async def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"specs": [RequestSpec("GET", "/")], "warmup": 0, **kwargs}
    specs = args.pop("specs")
    with pytest.raises(ValueError, match=message):
        await run_load("127.0.0.1", 9, specs, **args)  # type: ignore[arg-type]


def test_loop_factory_makes_a_working_loop() -> None:
    loop = loop_factory()()
    try:
        assert loop.run_until_complete(_answer()) == 42
    finally:
        loop.close()


async def _answer() -> int:
    return 42
