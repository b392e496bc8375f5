"""fastprof.scan.sweep: parsing, the recommendation rule, and `fastprof scan --sweep` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fastprof.load.client import LoadResult, RequestSpec
from fastprof.load.histogram import Histogram
from fastprof.scan import sweep as sweep_module
from fastprof.scan.sweep import (
    MAX_SETTINGS,
    Setting,
    Sweep,
    SweepError,
    SweepPoint,
    grid,
    label,
    mix,
    parse_sweep,
    parse_sweeps,
    recommend,
    specs_for,
)

# -- parsing -----------------------------------------------------------------------------------


def test_parse() -> None:
    assert parse_sweep("workers=1,2,4") == Sweep("workers", (1, 2, 4))
    assert parse_sweep(" Threads = 1, 40 ,1") == Sweep("threads", (1, 40))
    assert parse_sweep("keepalive=on,off") == Sweep("keepalive", ("on", "off"))
    assert parse_sweep("keepalive=true,0") == Sweep("keepalive", ("on", "off"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers", "write NAME=V1,V2"),
        ("=1,2", "write NAME=V1,V2"),
        ("cores=1,2", "unknown parameter 'cores' (known: workers, threads, keepalive)"),
        ("workers=1,two", "workers 'two'"),
        ("workers=0,1", "must be within 1-32"),
        ("keepalive=on,maybe", "must be on or off"),
        ("workers=2", "at least two different values"),
        ("workers=2,2", "at least two different values"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SweepError, match="--sweep") as caught:
        parse_sweep(text)
    assert message in str(caught.value)


def test_several_sweeps_form_a_grid() -> None:
    sweeps = parse_sweeps(["workers=1,2", "keepalive=on,off"])
    assert grid(sweeps) == [
        {"workers": 1, "keepalive": "on"},
        {"workers": 1, "keepalive": "off"},
        {"workers": 2, "keepalive": "on"},
        {"workers": 2, "keepalive": "off"},
    ]
    with pytest.raises(SweepError, match="more than once"):
        parse_sweeps(["workers=1,2", "workers=4,8"])
    with pytest.raises(SweepError, match=f"at most {MAX_SETTINGS}"):
        parse_sweeps(["workers=1,2,3,4,5", "threads=1,2,3"])


def test_keepalive_off_closes_every_request() -> None:
    specs = [RequestSpec("GET", "/", headers=(("connection", "keep-alive"), ("x-a", "1")))]
    assert specs_for(specs, {"keepalive": "on"}) == specs
    assert specs_for(specs, {"workers": 2}) == specs
    (closing,) = specs_for(specs, {"keepalive": "off"})
    assert closing.headers == (("x-a", "1"), ("Connection", "close"))


def test_every_route_equally_likely_in_the_mix() -> None:
    mixed = mix(
        {
            "GET /a": [RequestSpec("GET", "/a?x=1", weight=3), RequestSpec("GET", "/a?x=2")],
            "GET /b": [RequestSpec("GET", "/b", weight=5)],
        }
    )
    weights: dict[str, float] = {}
    for spec in mixed:
        weights[spec.name] = weights.get(spec.name, 0.0) + spec.weight
    assert weights == {"GET /a": pytest.approx(1.0), "GET /b": pytest.approx(1.0)}
    assert [s.weight for s in mixed[:2]] == [0.75, 0.25]


# -- the recommendation ------------------------------------------------------------------------


def pt(
    setting: Setting, rps: float, p99: float, errors: int = 0, requests: int = 1000
) -> SweepPoint:
    return {
        "value": next(iter(setting.values())),
        "setting": setting,
        "requests": requests,
        "rps": rps,
        "p50_ms": p99 / 3,
        "p99_ms": p99,
        "errors": errors,
        "timeouts": 0,
        "error_samples": [],
        "runs": [{"rps": rps, "p99_ms": p99}],
    }


def test_most_requests_per_second_wins() -> None:
    results = [pt({"workers": 1}, 1000, 10), pt({"workers": 2}, 1800, 9)]
    pick, line, notes = recommend(results, 2)
    assert pick == 1
    assert line.startswith("Recommended: workers=2 (1800 req/s, p99 9.0 ms): the most req/s")
    assert any("This machine has 2 CPUs" in n and "guide 004" in n for n in notes)


def test_a_much_worse_tail_is_left_out() -> None:
    results = [pt({"workers": 1}, 1000, 10), pt({"workers": 2}, 1300, 16)]
    pick, _, notes = recommend(results, 2)
    assert pick == 0
    assert "workers=2 served more (1300 req/s) but was left out: p99 16.0 ms" in notes[0]
    within = [pt({"workers": 1}, 1000, 10), pt({"workers": 2}, 1300, 14)]
    assert recommend(within, 2)[0] == 1


def test_errors_are_left_out() -> None:
    results = [pt({"workers": 1}, 1000, 10), pt({"workers": 2}, 5000, 2, errors=300)]
    pick, _, notes = recommend(results, 2)
    assert pick == 0
    assert notes[0] == "workers=2 left out: 30% of requests failed."


def test_errors_everywhere_compare_the_rest() -> None:
    # a route that always fails does not stop the comparison: errors relative to the lowest
    results = [pt({"workers": 1}, 1000, 10, errors=500), pt({"workers": 2}, 1500, 9, errors=500)]
    assert recommend(results, 2)[0] == 1


def test_cheaper_setting_within_noise_wins() -> None:
    results = [
        pt({"workers": 1}, 1000, 10),
        pt({"workers": 2}, 1970, 9),
        pt({"workers": 4}, 2000, 9),
    ]
    pick, line, _ = recommend(results, 8)
    assert pick == 1
    assert "workers=4 served the most (2000 req/s) but is within 5% of it" in line


def test_more_workers_made_it_worse() -> None:
    results = [
        pt({"workers": 1}, 1000, 10),
        pt({"workers": 2}, 1500, 9),
        pt({"workers": 4}, 1200, 10),
    ]
    pick, _, notes = recommend(results, 2)
    assert pick == 1
    worse = [n for n in notes if n.startswith("More workers made it worse")]
    assert worse == [
        "More workers made it worse: workers=4 served 20% fewer req/s than workers=2: workers "
        "beyond the free cores compete for them (guide 001: too many workers can degrade "
        "performance)."
    ]
    steady = [pt({"workers": 1}, 1000, 10), pt({"workers": 2}, 980, 10)]
    assert not any(n.startswith("More workers") for n in recommend(steady, 2)[2])


def test_keepalive_note_compares_the_twins_of_the_pick() -> None:
    results = [
        pt({"workers": 1, "keepalive": "on"}, 1200, 10),
        pt({"workers": 1, "keepalive": "off"}, 1000, 12),
        pt({"workers": 2, "keepalive": "on"}, 2000, 9),
        pt({"workers": 2, "keepalive": "off"}, 1600, 11),
    ]
    pick, _, notes = recommend(results, 2)
    assert pick == 2
    (note,) = [n for n in notes if n.startswith("Keep-alive")]
    assert note.startswith("Keep-alive on served +25% req/s against off (guide 002")


def test_few_requests_are_flagged() -> None:
    results = [pt({"workers": 1}, 30, 900, requests=90), pt({"workers": 2}, 900, 20)]
    notes = recommend(results, 2)[2]
    assert any(n.startswith("Under 200 requests measured for workers=1:") for n in notes)
    assert not any("Under 200" in n for n in recommend([results[1], results[1]], 2)[2])


def test_nothing_measured() -> None:
    results = [pt({"threads": 1}, 0, 0, requests=0), pt({"threads": 4}, 0, 0, requests=0)]
    pick, line, _ = recommend(results, 2)
    assert pick is None and "No setting completed a request" in line


def test_rounds_rotate_the_order_of_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[str] = []
    sent: list[tuple[str, ...]] = []

    @contextmanager
    def serve(setting: Setting) -> Iterator[tuple[str, int]]:
        served.append(label(setting))
        yield "127.0.0.1", 1

    def measure(host: str, port: int, specs: list[RequestSpec], **_: Any) -> LoadResult:
        sent.append(tuple(v for s in specs for k, v in s.headers if k == "Connection"))
        latency = Histogram()
        latency.record(0.01)
        return LoadResult(100, 0, 1.0, latency, {200: 100}, [], 0)

    monkeypatch.setattr(sweep_module, "_measure", measure)
    result = sweep_module.run_sweep(
        parse_sweeps(["workers=1,2,4"]),
        {"GET /": [RequestSpec("GET", "/")]},
        serve,
        concurrency=1,
        duration=1,
        warmup=0,
        timeout=1,
        rounds=3,
        base={"workers": 1, "keepalive": "on"},
    )
    assert served == [
        "workers=1", "workers=2", "workers=4",
        "workers=2", "workers=4", "workers=1",
        "workers=4", "workers=1", "workers=2",
    ]  # fmt: skip
    assert [len(p["runs"]) for p in result["results"]] == [3, 3, 3]
    assert result["base"] == {"keepalive": "on"}
    sent.clear()
    sweep_module.run_sweep(
        parse_sweeps(["keepalive=on,off"]),
        {"GET /": [RequestSpec("GET", "/")]},
        serve,
        concurrency=1,
        duration=1,
        warmup=0,
        timeout=1,
    )
    assert sent == [(), ("close",)]


# -- end to end --------------------------------------------------------------------------------

APP = """
import os
import time
from contextlib import asynccontextmanager
from fastapi import FastAPI, Request

PORTS = set()

@asynccontextmanager
async def lifespan(app):
    yield
    with open("ports.txt", "a") as f:  # one line per app run: the client ports it saw
        f.write(f"{len(PORTS)}\\n")

app = FastAPI(lifespan=lifespan)

@app.get("/")
async def root(request: Request):
    PORTS.add(request.client.port)
    return {"ok": True}

@app.get("/slow")
def slow():
    time.sleep(0.02)
    return {"ok": True}

@app.get("/other")
async def other():
    return {}
"""

FAST = [
    *("--duration", "0.2", "--warmup", "0", "--concurrency", "4"),
    *("--sweep-duration", "0.6", "--sweep-rounds", "1"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "sweepme.py").write_text(APP)
    return tmp_path


def fastprof(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastprof", "scan", "sweepme:app", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_sweep_over_workers(project: Path) -> None:
    run = fastprof(project, "--route", "GET /", "--sweep", "workers=1,2", "--out", "o", *FAST)
    assert run.returncode == 0, run.stderr
    assert "sweep: workers" in run.stdout and "Recommended: workers=" in run.stdout
    result: Any = json.loads((project / "o" / "findings.json").read_text())
    assert [r["route"] for r in result["routes"]] == ["GET /"]  # --route limits the scan too
    sweep = result["sweep"]
    assert sweep["parameter"] == "workers" and sweep["parameters"] == ["workers"]
    assert sweep["routes"] == ["GET /"] and sweep["duration"] == 0.6
    assert sweep["base"] == {"keepalive": "on"}
    assert [p["value"] for p in sweep["results"]] == [1, 2]
    assert [p["setting"] for p in sweep["results"]] == [{"workers": 1}, {"workers": 2}]
    for point in sweep["results"]:
        assert point["requests"] > 10 and point["rps"] > 0 and point["errors"] == 0
        assert 0 < point["p50_ms"] <= point["p99_ms"]
    assert sweep["recommended"] in (0, 1)
    assert sweep["recommendation"].startswith("Recommended: workers=")
    assert sweep["cpu_count"] and any("CPUs" in n for n in sweep["notes"])
    assert result["settings"]["sweep"] == ["workers=1,2"]
    assert sweep["rounds"] == 1 and all(len(p["runs"]) == 1 for p in sweep["results"])
    html = (project / "o" / "index.html").read_text()
    assert '"sweep":{"parameter":"workers"' in html.replace(" ", "")


def test_rounds_interleave_and_report_medians(project: Path) -> None:
    run = fastprof(
        project, *FAST, "--route", "GET /other", "--sweep", "workers=1,2",
        "--sweep-rounds", "3", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    sweep = json.loads(run.stdout)["sweep"]
    assert sweep["rounds"] == 3
    for point in sweep["results"]:
        rates = sorted(r["rps"] for r in point["runs"])
        assert len(rates) == 3 and point["rps"] == rates[1]
        assert point["p99_ms"] == sorted(r["p99_ms"] for r in point["runs"])[1]


def test_sweep_over_threads_resizes_the_threadpool(project: Path) -> None:
    # /slow is a def route sleeping 20 ms: one thread serves at most 50 req/s, eight ~400
    run = fastprof(
        project, "--route", "GET /slow", "--sweep", "threads=1,8", "--json", "--out", "o",
        "--concurrency", "8", "--duration", "0.2", "--warmup", "0", "--sweep-duration", "1",
        "--sweep-rounds", "1",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    one, eight = json.loads(run.stdout)["sweep"]["results"]
    assert one["setting"] == {"threads": 1} and eight["setting"] == {"threads": 8}
    assert one["rps"] < 60
    assert eight["rps"] > 2 * one["rps"]


def test_keepalive_off_opens_a_connection_per_request(project: Path) -> None:
    run = fastprof(project, "--route", "GET /", "--sweep", "keepalive=on,off", "--json", *FAST)
    assert run.returncode == 0, run.stderr
    on, off = json.loads(run.stdout)["sweep"]["results"]
    assert on["setting"] == {"keepalive": "on"} and off["setting"] == {"keepalive": "off"}
    # the scan's own run, then keepalive=on, then keepalive=off
    _, ports_on, ports_off = (int(n) for n in (project / "ports.txt").read_text().split())
    assert ports_on <= 8  # the 4 connections (a reconnect or two at most)
    assert ports_off > 0.5 * off["requests"]  # a new connection (client port) per request


RAW = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan here")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_sweep_of_an_app_without_lifespan_or_openapi(project: Path) -> None:
    (project / "raw.py").write_text(RAW)
    (project / "s.toml").write_text('[[request]]\npath = "/"\n')
    run = subprocess.run(
        [sys.executable, "-m", "fastprof", "scan", "raw:app", "--scenario", "s.toml",
         "--sweep", "workers=1,2", "--json", *FAST],
        cwd=project, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    sweep = json.loads(run.stdout)["sweep"]
    assert sweep["routes"] == ["GET /"]
    assert all(p["requests"] > 10 and p["errors"] == 0 for p in sweep["results"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "workers=1"], "at least two different values"),
        (["--sweep", "colour=red,blue"], "unknown parameter 'colour'"),
        (["--route", "GET /nope"], "--route 'GET /nope' is not a route this scan can load"),
        (["--sweep", "workers=1,2", "--replay", "x.jsonl"], "cannot run with --replay"),
        (["--route", "GET /", "--replay", "x.jsonl"], "with --replay the recording decides"),
    ],
)
def test_usage_errors(project: Path, args: list[str], message: str) -> None:
    (project / "x.jsonl").write_text('{"t": 1, "method": "GET", "path": "/", "headers": {}}\n')
    run = fastprof(project, *args, *FAST)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr


def test_sweep_needs_an_app_it_can_restart(project: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fastprof", "scan", "--url", "http://127.0.0.1:1",
         "--sweep", "workers=1,2"],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "give APP, not --url" in run.stderr
