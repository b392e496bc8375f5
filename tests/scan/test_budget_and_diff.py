from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from fastprof.scan.budget import BudgetError, check_budget, load_budget
from fastprof.scan.diff import diff_results, regressions


def route(key: str, rps: float, p99: float, queries: float = 1.0, blocked: float = 0.0) -> Any:
    return {
        "route": key,
        "requests": 100,
        "errors": 0,
        "rps": rps,
        "latency_ms": {"p50": p99 / 2, "p90": p99 * 0.9, "p99": p99, "max": p99, "mean": p99 / 2},
        "queries_per_request": queries,
        "blocked_ms": blocked,
        "status_counts": {},
        "error_samples": [],
        "timeouts": 0,
        "source": "openapi",
        "files": {},
    }


def finding(kind: str, route_key: str | None, line: int = 3) -> Any:
    return {
        "kind": kind,
        "severity": "high",
        "route": route_key,
        "title": kind,
        "evidence": {},
        "location": {"file": "app.py", "line": line, "function": "f"},
        "advice": "",
        "count": 1,
    }


def result(routes: list[Any], findings: list[Any]) -> Any:
    return {
        "schema": "fastprof.scan/1",
        "target": "app:app",
        "started_at": "2026-01-01T00:00:00+00:00",
        "settings": {},
        "routes": routes,
        "skipped": [],
        "findings": findings,
    }


def test_budget_limits_default_and_per_route(tmp_path: Path) -> None:
    path = tmp_path / "budget.toml"
    path.write_text(
        '[default]\np99_ms = 100\nqueries_per_request = 5\n\n["GET /slow"]\np99_ms = 500\n'
    )
    budget = load_budget(str(path))
    scanned = result(
        [route("GET /fast", 900, 50), route("GET /slow", 10, 400, queries=12)], []
    )
    assert check_budget(scanned, budget) == [
        "GET /slow: queries per request is 12, over the budget of 5"
    ]
    scanned["routes"][0]["latency_ms"]["p99"] = 150
    assert "GET /fast: p99 latency (ms) is 150, over the budget of 100" in check_budget(
        scanned, budget
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default]\np99 = 1\n", "unknown limit 'p99'"),
        ("[default]\np99_ms = -1\n", "p99_ms must be a number >= 0"),
        ("[users]\np99_ms = 1\n", "is neither [default] nor a route key"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_bad_budget_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(BudgetError, match=message.replace("[", r"\[")):
        load_budget(str(path))


def test_diff_routes_and_findings() -> None:
    a = result(
        [route("GET /a", 1000, 10, queries=21), route("GET /gone", 5, 5)],
        [finding("n_plus_one", "GET /a"), finding("event_loop_blocking", "GET /a")],
    )
    b = copy.deepcopy(a)
    b["routes"] = [route("GET /a", 800, 13, queries=1), route("GET /new", 50, 1)]
    b["findings"] = [
        finding("event_loop_blocking", "GET /a", line=9),
        finding("duplicate_query", None),
    ]
    compared = diff_results(a, b, "before", "after")
    by_route = {r["route"]: r for r in compared["routes"]}
    assert by_route["GET /a"]["change_pct"]["rps"] == -20.0
    assert by_route["GET /a"]["change_pct"]["p99"] == 30.0
    assert by_route["GET /a"]["change_pct"]["queries_per_request"] == pytest.approx(-95.2)
    assert by_route["GET /gone"]["b"] is None and by_route["GET /new"]["a"] is None
    assert [f["kind"] for f in compared["fixed"]] == ["n_plus_one"]
    assert [f["kind"] for f in compared["new"]] == ["duplicate_query"]
    assert [f["kind"] for f in compared["still_open"]] == ["event_loop_blocking"]
    assert regressions(compared, 25) == [
        "GET /a: p50 rose 30.0% (threshold 25%)",
        "GET /a: p99 rose 30.0% (threshold 25%)",
    ]
    assert "GET /a: rps fell 20.0% (threshold 10%)" in regressions(compared, 10)
    assert regressions(compared, 50) == []
