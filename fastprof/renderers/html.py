"""A self-contained HTML page with an interactive flame graph.

Everything is inline - the tree as JSON in a ``<script type="application/json">`` element, the
component's JavaScript and CSS from ``renderers/assets/`` - so the page opens from ``file://``
with no network. Function names and paths come from the profiled program and are untrusted:
the JSON is escaped so no string can close its script element, the script reads it with
``JSON.parse`` and writes it only through ``textContent`` and canvas text, and a
Content-Security-Policy allows just the page's own two scripts, by hash.
"""

from __future__ import annotations

import base64
import hashlib
import html
from functools import cache
from importlib.resources import files
from typing import TypedDict

import orjson

from fastprof.model import CallTree, Node, is_library_file
from fastprof.renderers.base import Renderer, short_path
from fastprof.renderers.text import ms


class FlameData(TypedDict):
    """The flame graph's input: one column per field, nodes in pre-order, node 0 the root.

    Siblings come heaviest first; ``fn`` and ``file`` index ``strings``; times are seconds.
    """

    version: int
    strings: list[str]
    fn: list[int]
    file: list[int]
    line: list[int]
    total: list[float]
    self: list[float]
    wait: list[float]
    lib: list[int]
    parent: list[int]


# Inside a <script> element only "</script", "<!--" and "<script" are dangerous, but escaping
# every <, > and & (and the two JavaScript line separators) is simpler to trust.
_JSON_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def script_json(value: object) -> str:
    """``value`` as JSON that is safe to place inside a ``<script>`` element."""
    return orjson.dumps(value).decode().translate(_JSON_ESCAPES)


class FlameColumns:
    """Builds the columns of :class:`FlameData` one frame at a time, in pre-order.

    Shared by the flame graph of one tree (:func:`flame_data`) and of two trees compared
    (``fastprof.report.diff``): strings interned once, a file's shown path and library flag
    computed once.
    """

    def __init__(self) -> None:
        self.data: FlameData = {
            "version": 1,
            "strings": [],
            "fn": [],
            "file": [],
            "line": [],
            "total": [],
            "self": [],
            "wait": [],
            "lib": [],
            "parent": [],
        }
        self._strings: dict[str, int] = {}
        self._files: dict[str, tuple[bool, int]] = {}

    def _intern(self, text: str) -> int:
        at = self._strings.get(text)
        if at is None:
            at = self._strings[text] = len(self._strings)
        return at

    def add(self, node: Node, parent: int, total: float, self_time: float, wait: float) -> int:
        """Append ``node``'s frame under ``parent`` (-1: the root); its index."""
        data = self.data
        index = len(data["parent"])
        known = self._files.get(node.file)
        if known is None:
            known = self._files[node.file] = (
                is_library_file(node.file),
                self._intern(short_path(node.file)),
            )
        data["fn"].append(self._intern(node.function))
        data["file"].append(known[1])
        data["line"].append(node.line)
        data["total"].append(round(total, 9))
        data["self"].append(round(self_time, 9))
        data["wait"].append(round(wait, 9))
        data["lib"].append(int(known[0]) if parent >= 0 else 0)
        data["parent"].append(parent)
        return index

    def finish(self) -> FlameData:
        self.data["strings"] = list(self._strings)
        return self.data


def flame_data(tree: CallTree) -> FlameData:
    """The columnar, pre-order form of ``tree`` that ``FastprofFlame.mount`` takes."""
    columns = FlameColumns()
    # Iterative: real stacks can be deeper than Python's recursion limit.
    stack: list[tuple[Node, int]] = [(tree.root, -1)]
    while stack:
        node, parent = stack.pop()
        index = columns.add(node, parent, node.total, node.self_time, node.await_time)
        children = sorted(node.children.values(), key=lambda c: c.total)  # lightest pushed first
        stack.extend((child, index) for child in children)
    return columns.finish()


@cache
def _asset(name: str) -> str:
    return files("fastprof.renderers").joinpath("assets", name).read_text(encoding="utf-8")


def flame_assets() -> tuple[str, str]:
    """The component's ``(javascript, css)``, for pages that embed the flame graph."""
    return _asset("flamegraph.js"), _asset("flamegraph.css")


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


_MOUNT = """
window.FastprofFlame.mount(
  document.getElementById("fastprof-flame"),
  JSON.parse(document.getElementById("fastprof-data").textContent),
  {}
);
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body class="fp-page">
<header class="fp-header">
<h1>{title}</h1>
<p class="fp-meta">{summary}</p>
</header>
<main>
<div id="fastprof-flame"></div>
</main>
<script type="application/json" id="fastprof-data">{data}</script>
<script>{js}</script>
<script>{mount}</script>
</body>
</html>
"""


class HTMLRenderer(Renderer):
    """A single HTML file with an interactive flame graph; opens offline from ``file://``."""

    name = "html"
    extension = ".html"

    def render(self, tree: CallTree, *, title: str = "") -> str:
        js, css = flame_assets()
        csp = (
            f"default-src 'none'; script-src {_csp_hash(js)} {_csp_hash(_MOUNT)}; "
            "style-src 'unsafe-inline'"
        )
        summary = (
            f"backend {tree.backend} · duration {ms(tree.duration)} · "
            f"{tree.root.samples} samples · total {ms(tree.total)}"
        )
        return _PAGE.format(
            csp=csp,
            title=html.escape(title or "fastprof profile"),
            summary=html.escape(summary),
            css=css,
            data=script_json(flame_data(tree)),
            js=js,
            mount=_MOUNT,
        )
