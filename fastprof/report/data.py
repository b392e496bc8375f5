"""The scan report's payload: what ``index.html`` embeds as JSON and ``report.js`` draws.

Everything the page shows is computed here, once: per route its numbers, its findings, its
latency histogram in bars and its flame graph in the component's columnar form; per finding its
evidence as recorded and the source lines around its location, read from disk now.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, TypedDict, cast

from fastprof.findings import SEVERITY_RANK
from fastprof.model import CallTree
from fastprof.renderers.base import short_path
from fastprof.renderers.html import FlameData, flame_data
from fastprof.report.histogram import HistogramBins, bins
from fastprof.report.source import SourceExcerpt, excerpt
from fastprof.scan.results import ScanFinding, ScanResult


class RoutePayload(TypedDict):
    route: str
    requests: int
    errors: int
    rps: float
    latency_ms: dict[str, float]
    queries_per_request: float
    blocked_ms: float
    status_counts: dict[str, int]
    error_samples: list[str]
    timeouts: int
    source: str
    files: dict[str, str]
    histogram: HistogramBins | None
    #: indices into ScanPayload.findings
    findings: list[int]
    #: index into ScanPayload.flames, None when the route has no samples
    flame: int | None


class FindingPayload(TypedDict):
    kind: str
    severity: str
    route: str | None
    title: str
    evidence: dict[str, Any]
    location: dict[str, Any] | None
    advice: str
    count: int
    #: the location as a reader wants it: ``app/users.py:42 in get_user``
    where: str | None
    source: SourceExcerpt | None


class ScanPayload(TypedDict):
    kind: Literal["scan"]
    target: str
    started_at: str
    settings: dict[str, Any]
    workers: list[int]
    routes: list[RoutePayload]
    skipped: list[dict[str, str]]
    findings: list[FindingPayload]
    flames: list[FlameData]
    #: findings.json's "sweep" (fastprof.scan.sweep.SweepResult), when the scan swept settings
    sweep: dict[str, Any] | None
    #: findings.json's "server" (fastprof.scan.server_check.ServerReport), with --url
    server: dict[str, Any] | None


def finding_payload(
    finding: ScanFinding | Mapping[str, Any], sources: dict[tuple[str, int], SourceExcerpt]
) -> FindingPayload:
    """One finding as the page shows it; ``sources`` caches excerpts by ``(file, line)``."""
    location = finding.get("location")
    source: SourceExcerpt | None = None
    where: str | None = None
    if isinstance(location, Mapping) and isinstance(location.get("file"), str):
        line = location.get("line")
        key = (location["file"], line if isinstance(line, int) else 0)
        source = sources.get(key)
        if source is None:
            source = sources[key] = excerpt(*key)
        where = short_path(key[0]) + (f":{key[1]}" if key[1] > 0 else "")
        if location.get("function"):
            where += f" in {location['function']}"
    evidence = finding.get("evidence")
    count = finding.get("count")
    return {
        "kind": str(finding.get("kind", "")),
        "severity": str(finding.get("severity", "low")),
        "route": finding.get("route"),
        "title": str(finding.get("title", "")),
        "evidence": dict(evidence) if isinstance(evidence, Mapping) else {},
        "location": dict(location) if isinstance(location, Mapping) else None,
        "advice": str(finding.get("advice", "")),
        "count": count if isinstance(count, int) else 1,
        "where": where,
        "source": source,
    }


def scan_payload(result: ScanResult, trees: Mapping[str, CallTree]) -> ScanPayload:
    """The payload for one scan; ``trees`` maps route keys to their merged call trees."""
    sources: dict[tuple[str, int], SourceExcerpt] = {}
    ordered = sorted(
        result.get("findings", []),
        key=lambda f: (-SEVERITY_RANK.get(f.get("severity", "low"), 0), f.get("route") or ""),
    )
    findings = [finding_payload(f, sources) for f in ordered]
    flames: list[FlameData] = []
    routes: list[RoutePayload] = []
    for route in result.get("routes", []):
        key = route["route"]
        tree = trees.get(key)
        flame: int | None = None
        if tree is not None and tree.total > 0:
            flame = len(flames)
            flames.append(flame_data(tree))
        histogram = route.get("latency_histogram")
        routes.append(
            {
                "route": key,
                "requests": route.get("requests", 0),
                "errors": route.get("errors", 0),
                "rps": route.get("rps", 0.0),
                "latency_ms": dict(route.get("latency_ms", {})),  # type: ignore[arg-type]
                "queries_per_request": route.get("queries_per_request", 0.0),
                "blocked_ms": route.get("blocked_ms", 0.0),
                "status_counts": dict(route.get("status_counts", {})),
                "error_samples": list(route.get("error_samples", [])),
                "timeouts": route.get("timeouts", 0),
                "source": route.get("source", ""),
                "files": {k: v for k, v in route.get("files", {}).items() if _relative(v)},
                "histogram": bins(histogram) if histogram else None,
                "findings": [i for i, f in enumerate(findings) if f["route"] == key],
                "flame": flame,
            }
        )
    return {
        "kind": "scan",
        "target": result.get("target", ""),
        "started_at": result.get("started_at", ""),
        "settings": dict(result.get("settings", {})),
        "workers": list(result.get("workers", [])),
        "routes": routes,
        "skipped": [
            {"route": s["route"], "reason": s["reason"]} for s in result.get("skipped", [])
        ],
        "findings": findings,
        "flames": flames,
        "sweep": _section(result, "sweep"),
        "server": _section(result, "server"),
    }


def _section(result: ScanResult, key: str) -> dict[str, Any] | None:
    """An optional top-level object of findings.json (absent in older results)."""
    value = cast(Mapping[str, Any], result).get(key)
    return dict(value) if isinstance(value, Mapping) else None


def _relative(path: object) -> bool:
    """A file link the page may show: a relative path inside the report directory."""
    if not isinstance(path, str) or not path or os.path.isabs(path) or ":" in path:
        return False
    return ".." not in path.replace("\\", "/").split("/")
