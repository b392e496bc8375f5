"""Two scan results side by side: the guides' "difference to baseline" table, computed.

Per route: req/s and latency with their change in percent, queries per request and blocked
time with their change; findings fixed (in A only), new (in B only) and still open (both),
matched by kind and route (a finding's line may move between versions).
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

from fastprof.model import CallTree
from fastprof.scan.results import RouteResult, ScanFinding, ScanResult


class RouteDelta(TypedDict):
    route: str
    a: dict[str, float] | None
    b: dict[str, float] | None
    change_pct: dict[str, float | None]


class DiffResult(TypedDict):
    schema: str
    a: str
    b: str
    routes: list[RouteDelta]
    fixed: list[ScanFinding]
    new: list[ScanFinding]
    still_open: list[ScanFinding]


METRICS = ("rps", "p50", "p90", "p99", "queries_per_request", "blocked_ms")
#: metrics where a bigger number is better (a drop is the regression)
HIGHER_IS_BETTER = {"rps"}


def _numbers(route: RouteResult) -> dict[str, float]:
    return {
        "rps": route["rps"],
        "p50": route["latency_ms"]["p50"],
        "p90": route["latency_ms"]["p90"],
        "p99": route["latency_ms"]["p99"],
        "queries_per_request": route["queries_per_request"],
        "blocked_ms": route["blocked_ms"],
    }


def _pct(a: float, b: float) -> float | None:
    if a == 0:
        return None if b == 0 else float("inf")
    return round((b - a) / a * 100, 1)


def _key(finding: ScanFinding) -> tuple[Any, ...]:
    return (finding["kind"], finding["route"])


def diff_results(a: ScanResult, b: ScanResult, name_a: str = "A", name_b: str = "B") -> DiffResult:
    routes_a = {r["route"]: r for r in a["routes"]}
    routes_b = {r["route"]: r for r in b["routes"]}
    deltas: list[RouteDelta] = []
    for key in [*routes_a, *[k for k in routes_b if k not in routes_a]]:
        ra, rb = routes_a.get(key), routes_b.get(key)
        na = _numbers(ra) if ra else None
        nb = _numbers(rb) if rb else None
        change = {m: _pct(na[m], nb[m]) if na and nb else None for m in METRICS}
        deltas.append({"route": key, "a": na, "b": nb, "change_pct": change})
    keys_a = {_key(f) for f in a["findings"]}
    keys_b = {_key(f) for f in b["findings"]}
    return {
        "schema": "fastprof.diff/1",
        "a": name_a,
        "b": name_b,
        "routes": deltas,
        "fixed": [f for f in a["findings"] if _key(f) not in keys_b],
        "new": [f for f in b["findings"] if _key(f) not in keys_a],
        "still_open": [f for f in b["findings"] if _key(f) in keys_a],
    }


def route_regressions(route: RouteDelta, threshold_pct: float) -> list[str]:
    """How ``route`` got worse: req/s fell, or p50/p99 rose, by more than ``threshold_pct``."""
    found = []
    for metric in ("rps", "p50", "p99"):
        change = route["change_pct"][metric]
        if change is None:
            continue
        worse = -change if metric in HIGHER_IS_BETTER else change
        if worse > threshold_pct:
            moved = "fell" if metric in HIGHER_IS_BETTER else "rose"
            found.append(
                f"{route['route']}: {metric} {moved} {abs(change):.1f}% "
                f"(threshold {threshold_pct:g}%)"
            )
    return found


def regressions(diff: DiffResult, threshold_pct: float) -> list[str]:
    """Routes whose req/s dropped, or latency rose, by more than ``threshold_pct`` percent."""
    return [line for route in diff["routes"] for line in route_regressions(route, threshold_pct)]


def result_dir(path: str) -> str:
    """The report directory of a result given as a directory or as its findings.json."""
    return path if os.path.isdir(path) else (os.path.dirname(path) or ".")


def load_result_trees(path: str, result: ScanResult) -> dict[str, CallTree]:
    """Each route's call tree from the result's report directory (``routes/*.tree.json``).

    The differential flame graph needs both scans' trees; a route whose tree file is missing
    gets none (its graph then shows only the other side).
    """
    from fastprof.scan.report import load_trees

    return load_trees(result_dir(path), result)
