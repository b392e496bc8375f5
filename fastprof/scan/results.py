"""The scan result: ``findings.json``, schema ``fastprof.scan/1`` (extend, don't break).

```
{"schema": "fastprof.scan/1", "target": str, "started_at": iso8601, "settings": {...},
 "routes": [{"route": "GET /users/{user_id}", "requests": int, "errors": int, "rps": float,
             "latency_ms": {"p50", "p90", "p99", "max", "mean"}, "queries_per_request": float,
             "blocked_ms": float, "status_counts": {...}, "error_samples": [...],
             "timeouts": int, "source": "openapi"|"scenario"|"replay", "files": {...},
             "latency_histogram": {...}}],
 "skipped": [{"route": str, "reason": str}], "workers": [pid, ...],
 "findings": [{"kind", "severity", "route", "title", "evidence", "location", "advice",
               "count"}]}
```

``route`` is the method and the route template separated by one space; null for app-level
findings. ``blocked_ms`` is the event-loop stall time per request, ``count`` how many requests
produced the finding. Keys after ``advice``/``blocked_ms`` are additions to the base schema.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import orjson

from fastprof.findings import SEVERITY_RANK, FindingDict
from fastprof.load.histogram import Histogram, HistogramDict
from fastprof.model import CallTree
from fastprof.scan.child import RouteCounters, WorkerResult

SCHEMA = "fastprof.scan/1"


class LatencyDict(TypedDict):
    p50: float
    p90: float
    p99: float
    max: float
    mean: float


class RouteResult(TypedDict):
    route: str
    requests: int
    errors: int
    rps: float
    latency_ms: LatencyDict
    queries_per_request: float
    blocked_ms: float
    status_counts: dict[str, int]
    error_samples: list[str]
    timeouts: int
    source: str
    files: dict[str, str]
    #: the latency histogram behind latency_ms (seconds; see fastprof.load.histogram)
    latency_histogram: NotRequired[HistogramDict]


class SkippedDict(TypedDict):
    route: str
    reason: str


class ScanFinding(FindingDict):
    count: NotRequired[int]


class ScanResult(TypedDict):
    schema: str
    target: str
    started_at: str
    settings: dict[str, Any]
    routes: list[RouteResult]
    skipped: list[SkippedDict]
    findings: list[ScanFinding]
    #: process ids of the app's workers whose results were merged (empty with --url)
    workers: NotRequired[list[int]]


class ServerCounters:
    """One route's server-side counters, summed over worker processes."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.queries = 0
        self.blocked = 0.0
        self.server_time = 0.0
        self.latency = Histogram()

    def add(self, route: RouteCounters) -> None:
        self.requests += route["requests"]
        self.errors += route["errors"]
        self.queries += route["queries"]
        self.blocked += route["blocked"]
        self.server_time += route["server_time"]
        self.latency.merge(Histogram.from_dict(route["latency"]))


def merge_workers(
    results: list[WorkerResult],
) -> tuple[dict[str, ServerCounters], dict[str, CallTree], list[ScanFinding]]:
    """Counters, trees and findings of every worker process, added up."""
    counters: dict[str, ServerCounters] = {}
    trees: dict[str, list[CallTree]] = {}
    findings: dict[tuple[Any, ...], ScanFinding] = {}
    for result in results:
        for key, route in result["routes"].items():
            counters.setdefault(key, ServerCounters()).add(route)
        for key, tree in result["trees"].items():
            trees.setdefault(key, []).append(CallTree.from_dict(tree))
        for counted in result["findings"]:
            finding = counted["finding"]
            loc = finding.get("location")
            ident = (
                finding["kind"],
                finding["route"],
                loc["file"] if loc else None,
                loc["line"] if loc else None,
            )
            if ident in findings:
                findings[ident]["count"] = findings[ident].get("count", 0) + counted["count"]
            else:
                findings[ident] = {**finding, "count": counted["count"]}
    merged_trees = {key: CallTree.merge(group) for key, group in trees.items()}
    ordered = sorted(
        findings.values(),
        key=lambda f: (-SEVERITY_RANK[f["severity"]], f["route"] or "", f["kind"]),
    )
    return counters, merged_trees, ordered


def worst_severity(result: ScanResult) -> int:
    return max((SEVERITY_RANK[f["severity"]] for f in result["findings"]), default=0)


def load_result(path: str) -> ScanResult:
    """Read a findings.json (or a directory holding one)."""
    import os

    if os.path.isdir(path):
        path = os.path.join(path, "findings.json")
    with open(path, "rb") as f:
        data: Any = orjson.loads(f.read())
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{path}: not a fastprof scan result (schema {found!r}, expected {SCHEMA})"
        )
    return data  # type: ignore[return-value]
