"""Replaying recorded traffic, and the JSONL and HAR loaders."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from fastprof.load import ReplayEntry, RequestSpec, load_har, load_jsonl, replay
from fastprof.recorder import TrafficRecorder
from tests.load.conftest import Server


def write_jsonl(path: Path, items: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in items))
    return path


# -- JSONL -------------------------------------------------------------------------------------


def test_load_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "traffic.jsonl",
        [
            {"t": 1000.5, "method": "post", "path": "/echo/a b/100%", "query": "x=1&y=%20",
             "headers": {"content-type": "application/json", "Connection": "keep-alive",
                         "host": "example.com", "content-length": "7", "keep-alive": "5"},
             "body_b64": base64.b64encode(b'{"a":1}').decode(), "status": 201,
             "duration": 0.01, "body_truncated": False},
            "",
            {"t": 1000.0, "method": "GET", "path": "/json"},
        ],
    )  # fmt: skip
    first, second = load_jsonl(path)
    assert first == ReplayEntry(0.0, RequestSpec("GET", "/json", name="GET /json"))
    assert second.offset == pytest.approx(0.5)
    assert second.spec == RequestSpec(
        "POST",
        "/echo/a%20b/100%25?x=1&y=%20",
        headers=(("content-type", "application/json"),),
        body=b'{"a":1}',
        name="POST /echo/a b/100%",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"method": "GET", "path": "/"}', '"t" must be a number'),
        ('{"t": true, "method": "GET", "path": "/"}', '"t" must be a number'),
        ('{"t": 1, "method": "G T", "path": "/"}', '"method" must be an HTTP method'),
        ('{"t": 1, "method": "GET", "path": "x"}', '"path" must be a string starting with "/"'),
        ('{"t": 1, "method": "GET", "path": "/", "query": 3}', '"query" must be a string'),
        ('{"t": 1, "method": "GET", "path": "/", "headers": {"a": 1}}', '"headers" must be'),
        ('{"t": 1, "method": "GET", "path": "/", "body_b64": "!!"}', "not valid base64"),
        ('{"t": 1, "method": "GET", "path": "/", "raw_path": "/a b"}', '"raw_path" must be'),
        ('{"t": 1, "method": "GET", "path": "/", "raw_path": 7}', '"raw_path" must be'),
    ],
)
def test_load_jsonl_errors_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"t": 1, "method": "GET", "path": "/"}, "", line])
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: ") as info:
        load_jsonl(path)
    assert message in str(info.value)


async def test_what_the_middleware_records_replays_the_same_request(
    tmp_path: Path, server: Server
) -> None:
    recorder = TrafficRecorder(tmp_path / "rec.jsonl", headers=("content-type", "x-custom"))
    scope = {
        "type": "http",
        "method": "PUT",
        "path": "/echo/caf\u00e9 au lait",
        "query_string": b"tag=recorded&q=a%26b",
        "headers": [(b"content-type", b"text/plain"), (b"x-custom", b"1"), (b"cookie", b"s")],
    }
    recorder.record(scope, [b"payload"], time.time(), 0.01, 200)
    recorder.flush()
    entries = load_jsonl(tmp_path / "rec.jsonl")
    result = await replay(server.host, server.port, entries, pace="fast")
    assert (result.requests, result.status_counts) == (1, {200: 1})
    (seen,) = server.seen("recorded")
    assert (seen["method"], seen["path"], seen["body"]) == ("PUT", scope["path"], b"payload")
    assert seen["raw_query"] == "tag=recorded&q=a%26b"
    assert seen["headers"]["content-type"] == "text/plain" and seen["headers"]["x-custom"] == "1"
    assert "cookie" not in seen["headers"]  # the recorder did not keep it


async def test_an_encoded_slash_is_replayed_encoded(tmp_path: Path, server: Server) -> None:
    recorder = TrafficRecorder(tmp_path / "rec.jsonl")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/echo/a/b",  # what ASGI decodes /echo/a%2Fb to
        "raw_path": b"/echo/a%2Fb",
        "query_string": b"tag=slash",
        "headers": [],
    }
    recorder.record(scope, [], time.time(), 0.01, 200)
    recorder.flush()
    (entry,) = load_jsonl(tmp_path / "rec.jsonl")
    assert entry.spec.path == "/echo/a%2Fb?tag=slash"
    assert entry.spec.name == "GET /echo/a/b"
    result = await replay(server.host, server.port, [entry], pace="fast")
    assert result.status_counts == {200: 1}
    (seen,) = server.seen("slash")
    assert seen["raw_path"] == "/echo/a%2Fb"


# -- HAR ---------------------------------------------------------------------------------------


def har_entry(started: str, method: str, url: str, **request: Any) -> dict[str, Any]:
    return {
        "startedDateTime": started,
        "time": 12.5,
        "request": {"method": method, "url": url, "httpVersion": "HTTP/1.1",
                    "headers": [], "queryString": [], "cookies": [], **request},
        "response": {"status": 200},
    }  # fmt: skip


def write_har(path: Path, entries: list[Any]) -> Path:
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {}, "entries": entries}}))
    return path


def test_load_har(tmp_path: Path) -> None:
    headers = [
        {"name": ":authority", "value": "example.com"},
        {"name": "Host", "value": "example.com"},
        {"name": "Connection", "value": "keep-alive, X-Hop"},
        {"name": "X-Hop", "value": "dropped: named by Connection"},
        {"name": "Content-Length", "value": "13"},
        {"name": "Accept", "value": "application/json"},
        {"name": "Cookie", "value": "session=1"},
    ]
    path = write_har(
        tmp_path / "capture.har",
        [
            har_entry("2024-05-01T12:00:01.250+01:00", "POST", "https://example.com/items?x=1#frag",
                      headers=headers, postData={"mimeType": "application/json",
                                                 "text": '{"name":"é"}'}),
            har_entry("2024-05-01T11:00:00.000Z", "GET", "http://example.com"),
            har_entry("2024-05-01T11:00:00.500Z", "POST", "http://example.com/form",
                      postData={"mimeType": "application/x-www-form-urlencoded",
                                "params": [{"name": "a", "value": "1 2"}, {"name": "b"}]}),
        ],
    )  # fmt: skip
    root, form, post = load_har(path)
    assert root == ReplayEntry(0.0, RequestSpec("GET", "/", name="GET /"))
    assert form.offset == pytest.approx(0.5)
    assert form.spec.body == b"a=1+2&b="
    assert post.offset == pytest.approx(1.25)
    assert post.spec == RequestSpec(
        "POST",
        "/items?x=1",
        headers=(("Accept", "application/json"), ("Cookie", "session=1")),
        body='{"name":"é"}'.encode(),
        name="POST /items",
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("nope", "expected an object"),
        ({"request": {}}, "startedDateTime must be an ISO 8601 string"),
        (har_entry("yesterday", "GET", "http://x/"), "not ISO 8601"),
        (har_entry("2024-05-01T11:00:00", "GET", "http://x/"), "no time zone"),
        ({"startedDateTime": "2024-05-01T11:00:00Z"}, "no request object"),
        (har_entry("2024-05-01T11:00:00Z", "", "http://x/"), "request.method"),
        (har_entry("2024-05-01T11:00:00Z", "GET", "/relative"), "not an absolute http(s) URL"),
        (har_entry("2024-05-01T11:00:00Z", "GET", "http://x/", headers=[{"name": "a"}]),
         "request.headers"),
        (har_entry("2024-05-01T11:00:00Z", "GET", "http://x/", postData={"text": 5}),
         "postData.text must be a string"),
    ],
)  # fmt: skip
def test_load_har_errors_name_the_file_and_entry(tmp_path: Path, entry: Any, message: str) -> None:
    path = write_har(tmp_path / "bad.har", [har_entry("2024-05-01T11:00:00Z", "GET", "http://x/"),
                                            entry])  # fmt: skip
    with pytest.raises(ValueError, match=r"bad\.har: entry 1: ") as info:
        load_har(path)
    assert message in str(info.value)


def test_load_har_rejects_what_is_not_a_har(tmp_path: Path) -> None:
    (tmp_path / "a.har").write_text("{oops")
    with pytest.raises(ValueError, match=r"a\.har: not valid JSON .* line 1"):
        load_har(tmp_path / "a.har")
    (tmp_path / "b.har").write_text('{"log": {}}')
    with pytest.raises(ValueError, match=r"b\.har: not a HAR file: no log.entries"):
        load_har(tmp_path / "b.har")


# -- replay ------------------------------------------------------------------------------------


def entries(tag: str, offsets: list[float]) -> list[ReplayEntry]:
    return [
        ReplayEntry(offset, RequestSpec("POST", f"/echo/{i}?tag={tag}", body=b"x" * i))
        for i, offset in enumerate(offsets)
    ]


async def test_original_pace_keeps_the_gaps(server: Server) -> None:
    started = time.perf_counter()
    result = await replay(
        server.host, server.port, entries("original", [0.6, 0.0, 0.3, 0.3]), pace="original"
    )
    elapsed = time.perf_counter() - started
    assert (result.requests, result.errors, result.status_counts) == (4, 0, {200: 4})
    seen = server.seen("original")
    paths = [s["path"] for s in seen]
    assert (paths[0], paths[-1]) == ("/echo/1", "/echo/0")  # offset order, not list order
    times = [s["time"] - started for s in seen]
    assert times[-1] - times[0] >= 0.55
    assert 0.25 <= times[1] - times[0] <= 0.45
    assert 0.55 <= elapsed < 1.5
    bodies = [len(s["body"]) for s in seen]
    assert bodies[0] == 1 and sorted(bodies[1:3]) == [2, 3] and bodies[3] == 0  # 2, 3 race


async def test_fast_pace_ignores_the_gaps(server: Server) -> None:
    started = time.perf_counter()
    result = await replay(
        server.host, server.port, entries("fast", [0.0, 0.5, 1.0, 1.5, 2.0]),
        pace="fast", concurrency=1,
    )  # fmt: skip
    assert time.perf_counter() - started < 0.5
    assert (result.requests, result.status_counts) == (5, {200: 5})
    assert [s["path"] for s in server.seen("fast")] == [f"/echo/{i}" for i in range(5)]


async def test_a_connection_the_server_closed_while_idle_is_replaced(server: Server) -> None:
    # The test server closes keep-alive connections idle for 1 s; the gap here is longer.
    result = await replay(
        server.host, server.port, entries("idle", [0.0, 1.4]), pace="original", concurrency=1
    )
    assert (result.requests, result.errors, result.status_counts) == (2, 0, {200: 2})
    assert len({s["port"] for s in server.seen("idle")}) == 2


async def test_replay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pace must be one of"):
        await replay("127.0.0.1", 9, entries("x", [0.0]), pace="slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no entries"):
        await replay("127.0.0.1", 9, [], pace="fast")
    with pytest.raises(ValueError, match="offsets"):
        await replay("127.0.0.1", 9, entries("x", [-1.0]), pace="fast")
