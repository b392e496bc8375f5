"""What a scan writes: ``findings.json``, ``index.html``, and per-route flame graph files.

Per route, under ``routes/``: the merged call tree (``<slug>.tree.json``, what ``fastprof report``
re-renders from), a speedscope file, collapsed stacks and a static SVG flame graph; their paths
relative to the report directory go into the route's ``files``. ``index.html`` is the
self-contained report page (:mod:`fastprof.report`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import orjson

from fastprof.model import CallTree
from fastprof.renderers import render
from fastprof.report.data import scan_payload
from fastprof.report.page import render_page
from fastprof.scan.results import ScanResult

#: route file kind -> renderer name and file suffix
ROUTE_FILES: dict[str, tuple[str, str]] = {
    "speedscope": ("speedscope", ".speedscope.json"),
    "collapsed": ("collapsed", ".collapsed"),
    "svg": ("svg", ".svg"),
}


def slug(route: str) -> str:
    """A file name for a route key: ``GET /users/{id}`` -> ``GET_users_id``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", route).strip("_") or "root"


def write_report(result: ScanResult, trees: dict[str, CallTree], out: str) -> None:
    """Write the route files, ``findings.json`` and ``index.html`` into ``out``."""
    os.makedirs(os.path.join(out, "routes"), exist_ok=True)
    taken: set[str] = set()
    for route in result["routes"]:
        tree = trees.get(route["route"])
        if tree is None:
            continue
        name = base = slug(route["route"])
        n = 1
        while name.lower() in taken:  # "GET /a-b" and "GET /a_b" share a slug
            n += 1
            name = f"{base}_{n}"
        taken.add(name.lower())
        files: dict[str, str] = {}
        for kind, (renderer, suffix) in ROUTE_FILES.items():
            files[kind] = os.path.join("routes", name + suffix)
            with open(os.path.join(out, files[kind]), "w", encoding="utf-8") as f:
                f.write(render(tree, renderer, title=route["route"]))
        files["tree"] = os.path.join("routes", f"{name}.tree.json")
        with open(os.path.join(out, files["tree"]), "wb") as f:
            f.write(tree.to_json())
        route["files"] = files
    with open(os.path.join(out, "findings.json"), "wb") as f:
        f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    write_index(result, trees, out)


def write_index(result: ScanResult, trees: Mapping[str, CallTree], out: str) -> str:
    """Write ``out/index.html``; returns its path."""
    path = os.path.join(out, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(result, trees))
    return path


def render_html(result: ScanResult, trees: Mapping[str, CallTree]) -> str:
    """The report page for ``result``."""
    return render_page(scan_payload(result, trees), title=f"fastprof scan: {result['target']}")


def load_trees(out: str, result: ScanResult) -> dict[str, CallTree]:
    """The routes' call trees a report directory holds (``routes[].files.tree``).

    A tree file that is missing or unreadable is left out: the page then says the route has no
    flame graph rather than failing.
    """
    trees: dict[str, CallTree] = {}
    for route in result.get("routes", []):
        name = route.get("files", {}).get("tree")
        if not name or os.path.isabs(name):
            continue
        try:
            with open(os.path.join(out, name), "rb") as f:
                trees[route["route"]] = CallTree.from_json(f.read())
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return trees
