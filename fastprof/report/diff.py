"""The diff report (``fastprof diff A B --html OUT``) and its differential flame graph.

The differential flame graph of a route is the union of A's and B's call trees for it. Each tree
is first scaled so that its root equals that scan's mean latency for the route, which makes every
time "milliseconds of an average request" whatever the number of requests each scan profiled.
A frame is as wide as its time in A plus its time in B (so a frame that vanished in B keeps
room to be seen) and coloured by the difference: red where B spends more, blue where it spends
less. Await time is folded into self time: the graph shows where each request's time went.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from fastprof.model import CallTree, FrameKey, Node
from fastprof.renderers.html import FlameColumns, FlameData
from fastprof.report.data import FindingPayload, finding_payload
from fastprof.report.page import render_page
from fastprof.report.source import SourceExcerpt
from fastprof.scan.diff import DiffResult, RouteDelta, route_regressions
from fastprof.scan.results import ScanResult


class DiffColumns(TypedDict):
    """Per node, its inclusive time in A and in B (scaled, seconds)."""

    a: list[float]
    b: list[float]


class DiffFlameData(FlameData):
    diff: DiffColumns


class SideInfo(TypedDict):
    name: str
    target: str
    started_at: str


class DiffRoutePayload(RouteDelta):
    regression: bool
    flame: int | None


class DiffPayload(TypedDict):
    kind: Literal["diff"]
    a: SideInfo
    b: SideInfo
    threshold_pct: float
    routes: list[DiffRoutePayload]
    findings: list[FindingPayload]
    fixed: list[int]
    new: list[int]
    still_open: list[int]
    flames: list[DiffFlameData]


def diff_flame_data(
    a: CallTree | None, b: CallTree | None, scale_a: float = 1.0, scale_b: float = 1.0
) -> DiffFlameData:
    """The union of ``a`` and ``b`` in the flame component's columns, with ``diff`` columns.

    ``scale_a`` and ``scale_b`` multiply every time of their tree (see the module docstring).
    """
    columns = FlameColumns()
    diff: dict[str, list[float]] = {"a": [], "b": []}

    def weight(node: Node | None, scale: float) -> float:
        return node.total * scale if node is not None else 0.0

    root_a = a.root if a is not None else None
    root_b = b.root if b is not None else None
    # Iterative pre-order: (node in A, node in B, parent index); stacks can be very deep.
    stack: list[tuple[Node | None, Node | None, int]] = [(root_a, root_b, -1)]
    while stack:
        na, nb, parent = stack.pop()
        some = na if na is not None else nb
        assert some is not None
        ta, tb = weight(na, scale_a), weight(nb, scale_b)
        own = 0.0
        if na is not None:
            own += (na.self_time + na.await_time) * scale_a
        if nb is not None:
            own += (nb.self_time + nb.await_time) * scale_b
        index = columns.add(some, parent, ta + tb, own, 0.0)
        diff["a"].append(round(ta, 9))
        diff["b"].append(round(tb, 9))
        kids_a = na.children if na is not None else {}
        kids_b = nb.children if nb is not None else {}
        keys: list[FrameKey] = list(kids_a)
        keys.extend(k for k in kids_b if k not in kids_a)
        pairs = [(kids_a.get(k), kids_b.get(k)) for k in keys]
        pairs.sort(key=lambda p: weight(p[0], scale_a) + weight(p[1], scale_b))
        stack.extend((ca, cb, index) for ca, cb in pairs)  # lightest pushed first
    out: DiffFlameData = {**columns.finish(), "diff": diff}  # type: ignore[typeddict-item]
    return out


def _scale(tree: CallTree | None, route: Mapping[str, Any] | None) -> float:
    """Seconds of an average request per second of the tree (1.0 when unknown)."""
    if tree is None or tree.total <= 0 or route is None:
        return 1.0
    mean = route.get("latency_ms", {}).get("mean")
    if not isinstance(mean, int | float) or mean <= 0:
        return 1.0
    return float(mean) / 1000 / tree.total


def diff_payload(
    diff: DiffResult,
    a: ScanResult,
    b: ScanResult,
    trees_a: Mapping[str, CallTree],
    trees_b: Mapping[str, CallTree],
    *,
    threshold_pct: float = 5.0,
) -> DiffPayload:
    """Everything the diff page shows; ``trees_*`` map route keys to each scan's call trees."""
    routes_a = {r["route"]: r for r in a.get("routes", [])}
    routes_b = {r["route"]: r for r in b.get("routes", [])}
    sources: dict[tuple[str, int], SourceExcerpt] = {}
    findings: list[FindingPayload] = []
    groups: dict[str, list[int]] = {}
    for name in ("new", "fixed", "still_open"):
        groups[name] = []
        for finding in diff[name]:
            groups[name].append(len(findings))
            findings.append(finding_payload(finding, sources))
    flames: list[DiffFlameData] = []
    routes: list[DiffRoutePayload] = []
    for delta in diff["routes"]:
        key = delta["route"]
        tree_a, tree_b = trees_a.get(key), trees_b.get(key)
        flame: int | None = None
        if (tree_a is not None and tree_a.total > 0) or (tree_b is not None and tree_b.total > 0):
            flame = len(flames)
            flames.append(
                diff_flame_data(
                    tree_a,
                    tree_b,
                    _scale(tree_a, routes_a.get(key)),
                    _scale(tree_b, routes_b.get(key)),
                )
            )
        routes.append(
            {
                **delta,
                "regression": bool(route_regressions(delta, threshold_pct)),
                "flame": flame,
            }
        )
    return {
        "kind": "diff",
        "a": _side(diff["a"], a),
        "b": _side(diff["b"], b),
        "threshold_pct": threshold_pct,
        "routes": routes,
        "findings": findings,
        "fixed": groups["fixed"],
        "new": groups["new"],
        "still_open": groups["still_open"],
        "flames": flames,
    }


def _side(name: str, result: ScanResult) -> SideInfo:
    return {
        "name": name,
        "target": result.get("target", ""),
        "started_at": result.get("started_at", ""),
    }


def render_diff(payload: DiffPayload) -> str:
    """The diff page."""
    return render_page(
        payload, title=f"fastprof diff: {payload['a']['name']} → {payload['b']['name']}"
    )
