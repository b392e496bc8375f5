"""`fastprof scan` and `fastprof diff` end to end: a real app in a real server process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

APP = """
import asyncio
from contextlib import asynccontextmanager
from fastapi import FastAPI, HTTPException

app = FastAPI()

@app.get("/")
async def root():
    return {"ok": True}

@app.get("/boom")
async def boom():
    raise HTTPException(status_code=503, detail="down for maintenance")

@app.get("/hang")
async def hang():
    await asyncio.sleep(2)
    return {}

@app.get("/stall")
async def stall():
    import time
    time.sleep(0.25)
    return {}

@app.get("/items/{item_id}")
async def item(item_id: int):
    return {"id": item_id}

@app.post("/items")
async def create(body: dict):
    return body

@asynccontextmanager
async def failing(app):
    print("connecting to the database at db.invalid")
    raise RuntimeError("database unreachable")
    yield

crashing = FastAPI(lifespan=failing)
"""

FAST = ["--duration", "0.3", "--warmup", "0.05", "--concurrency", "4"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "scanme.py").write_text(APP)
    return tmp_path


def fastprof(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastprof", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_scan_writes_the_report_and_records_failures(project: Path) -> None:
    scenario = project / "s.toml"
    scenario.write_text('[[request]]\npath = "/items/{item_id}"\nparams = { item_id = 3 }\n')
    run = fastprof(
        project,
        "scan",
        "scanme:app",
        "--json",
        "--timeout",
        "0.5",
        "--scenario",
        str(scenario),
        "--out",
        "out",
        *FAST,
    )
    assert run.returncode == 0, run.stderr
    result: Any = json.loads(run.stdout)
    assert result["schema"] == "fastprof.scan/1" and result["target"] == "scanme:app"
    routes = {r["route"]: r for r in result["routes"]}
    assert set(routes) == {"GET /", "GET /boom", "GET /hang", "GET /stall", "GET /items/{item_id}"}
    assert routes["GET /"]["requests"] > 10 and routes["GET /"]["errors"] == 0
    assert routes["GET /"]["latency_ms"]["p50"] > 0
    assert routes["GET /items/{item_id}"]["source"] == "scenario"
    boom = routes["GET /boom"]
    assert boom["errors"] == boom["requests"] > 0 and boom["status_counts"] == {
        "503": boom["requests"]
    }
    assert "503" in boom["error_samples"][0] and "maintenance" in boom["error_samples"][0]
    assert routes["GET /hang"]["timeouts"] > 0  # recorded, and the scan went on
    assert [s["route"] for s in result["skipped"]] == ["POST /items"]
    assert len(result["workers"]) == 1
    out = project / "out"
    assert json.loads((out / "findings.json").read_text()) == result
    html = (out / "index.html").read_text()
    assert "GET /items/{item_id}" in html and "<script" in html
    assert (out / routes["GET /"]["files"]["speedscope"]).exists()
    assert (out / routes["GET /"]["files"]["collapsed"]).read_text().strip()


def test_two_workers_are_merged(project: Path) -> None:
    run = fastprof(project, "scan", "scanme:app", "--json", "--workers", "2", "--out", "o", *FAST)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert len(set(result["workers"])) == 2
    root = next(r for r in result["routes"] if r["route"] == "GET /")
    assert root["requests"] > 10


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        ("nosuchmodule:app", 3, "module 'nosuchmodule' not found"),
        ("scanme:nope", 3, "module 'scanme' has no attribute 'nope'"),
        ("scanme:root", 3, "not an ASGI app"),
        ("scanme", 3, "is not MODULE:APP"),
    ],
)
def test_app_that_cannot_be_loaded(project: Path, spec: str, code: int, message: str) -> None:
    run = fastprof(project, "scan", spec, *FAST)
    assert run.returncode == code
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: ")


def test_app_crashing_at_startup_shows_its_last_log_lines(project: Path) -> None:
    run = fastprof(project, "scan", "scanme:crashing", *FAST)
    assert run.returncode == 4, run.stderr
    assert "error: the app exited during startup" in run.stderr
    assert "database unreachable" in run.stderr
    assert "db.invalid" in run.stderr


def test_port_in_use(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = fastprof(project, "scan", "scanme:app", "--port", str(port), *FAST)
    assert run.returncode == 5
    assert f"port {port} on 127.0.0.1 is in use" in run.stderr


def test_malformed_scenario(project: Path) -> None:
    bad = project / "bad.toml"
    bad.write_text('[[request]]\npath = "/items/{item_id}"\n')
    run = fastprof(project, "scan", "scanme:app", "--scenario", str(bad), *FAST)
    assert run.returncode == 2
    assert "bad.toml:1: [[request]] #1: path /items/{item_id} needs params item_id" in run.stderr


def test_usage_errors(project: Path) -> None:
    both = fastprof(project, "scan", "scanme:app", "--url", "http://127.0.0.1:1")
    assert both.returncode == 2 and "not both or neither" in both.stderr
    remote = fastprof(project, "scan", "--url", "http://example.com:80")
    assert remote.returncode == 2 and "only sends load to this machine" in remote.stderr


def test_budget_exit_code(project: Path) -> None:
    budget = project / "budget.toml"
    budget.write_text('["GET /"]\np99_ms = 0\n')
    run = fastprof(
        project, "scan", "scanme:app", "--budget", str(budget), "--timeout", "0.3", *FAST
    )
    assert run.returncode == 1, run.stderr
    assert "fail: GET /: p99 latency (ms) is" in run.stderr
    bad = project / "bad_budget.toml"
    bad.write_text("[default]\nspeed = 1\n")
    run = fastprof(project, "scan", "scanme:app", "--budget", str(bad), *FAST)
    assert run.returncode == 2 and "unknown limit 'speed'" in run.stderr


def test_replay_of_recorded_jsonl_and_har(project: Path) -> None:
    jsonl = project / "traffic.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(
                {"t": 1000 + i * 0.01, "method": "GET", "path": p, "query": "", "headers": {}}
            )
            for i, p in enumerate(["/", "/items/1", "/items/2", "/"] * 5)
        )
        + "\n"
    )
    run = fastprof(project, "scan", "scanme:app", "--json", "--replay", str(jsonl), "--out", "r1")
    assert run.returncode == 0, run.stderr
    routes = {r["route"]: r for r in json.loads(run.stdout)["routes"]}
    assert routes["GET /"]["requests"] == 10 and routes["GET /items/{item_id}"]["requests"] == 10
    assert routes["GET /"]["source"] == "replay"

    har = project / "traffic.har"
    entries = [
        {
            "startedDateTime": f"2026-01-01T00:00:0{i}.000Z",
            "request": {"method": "GET", "url": f"http://shop.test/items/{i}", "headers": []},
        }
        for i in range(4)
    ]
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}))
    run = fastprof(project, "scan", "scanme:app", "--json", "--replay", str(har), "--out", "r2")
    assert run.returncode == 0, run.stderr
    routes = {r["route"]: r for r in json.loads(run.stdout)["routes"]}
    assert routes["GET /items/{item_id}"]["requests"] == 4

    broken = project / "broken.jsonl"
    broken.write_text('{"t": 1, "method": "GET", "path": "/"}\nnot json\n')
    run = fastprof(project, "scan", "scanme:app", "--replay", str(broken))
    assert run.returncode == 2 and "broken.jsonl" in run.stderr and "2" in run.stderr


def test_diff_of_two_scans(project: Path) -> None:
    for out in ("a", "b"):
        run = fastprof(project, "scan", "scanme:app", "--out", out, *FAST)
        assert run.returncode == 0, run.stderr
    compared = fastprof(project, "diff", "a", "b", "--json")
    assert compared.returncode == 0, compared.stderr
    data = json.loads(compared.stdout)
    assert {r["route"] for r in data["routes"]} >= {"GET /", "GET /boom"}
    text = fastprof(project, "diff", "a", "b/findings.json")
    assert text.returncode == 0 and "GET /" in text.stdout and "findings fixed: 0" in text.stdout
    strict = fastprof(project, "diff", "a", "b", "--fail-on-regression", "0")
    assert strict.returncode in (0, 1)
    if strict.returncode == 1:
        assert "regression:" in strict.stderr
    missing = fastprof(project, "diff", "a", "nowhere")
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_fail_on_exit_code(project: Path) -> None:
    run = fastprof(
        project,
        "scan",
        "scanme:app",
        "--detector",
        "event_loop_blocking",
        "--fail-on",
        "medium",
        "--timeout",
        "0.5",
        *FAST,
    )
    assert run.returncode == 1, run.stderr
    assert "fail: " in run.stderr and "at or above medium" in run.stderr
    run = fastprof(
        project,
        "scan",
        "scanme:app",
        "--detector",
        "threadpool_saturation",
        "--fail-on",
        "low",
        "--timeout",
        "0.5",
        *FAST,
    )
    assert run.returncode == 0, run.stderr
