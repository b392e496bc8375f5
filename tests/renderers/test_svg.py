from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from fastprof.model import CallTree
from fastprof.renderers import RENDERERS, render, renderer_class
from fastprof.renderers.svg import SVGRenderer, library_color, name_hash, user_color

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = [
    "</text><script>alert(1)</script>",
    '"><g onload="alert(1)">',
    "&amp; <![CDATA[ x ]]>",
    "ctrl\x00\x07\x1b",
    "\U0001f600 emoji",
    "lone \udcff surrogate",
]


def build() -> CallTree:
    tree = CallTree(backend="test", duration=0.1)
    tree.add_stack([("main", "/srv/app/main.py", 1), ("query", "/srv/app/db.py", 7)], 0.02)
    tree.add_stack(
        [("main", "/srv/app/main.py", 1), ("query", "/srv/app/db.py", 7)], 0.05, awaiting=True
    )
    tree.add_stack(
        [("main", "/srv/app/main.py", 1), ("run", "/v/lib/site-packages/starlette/x.py", 3)], 0.03
    )
    return tree


def frames(svg: str) -> list[tuple[str, str, float, str]]:
    """(label, title, width, fill) of every frame box."""
    root = ET.fromstring(svg)
    out = []
    for g in root.iter(f"{NS}g"):
        rect = g.find(f"{NS}rect")
        title = g.find(f"{NS}title")
        if rect is None or title is None:
            continue
        text = g.find(f"{NS}text")
        out.append(
            (
                text.text if text is not None and text.text else "",
                title.text or "",
                float(rect.get("width", "0")),
                rect.get("fill", ""),
            )
        )
    return out


def test_registered() -> None:
    assert RENDERERS["svg"] == "fastprof.renderers.svg:SVGRenderer"
    assert renderer_class("svg") is SVGRenderer and SVGRenderer.extension == ".svg"


def test_icicle_with_await_blocks_and_tooltips() -> None:
    svg = render(build(), "svg", title="GET /x")
    boxes = frames(svg)
    labels = [b[0] for b in boxes]
    assert labels[:2] == ["all", "main"]
    assert set(labels) == {"all", "main", "query", "run", "[await]"}
    widths = {b[0]: b[2] for b in boxes}
    assert widths["all"] == pytest.approx(1199)  # the full width, less the 1 px gap
    assert widths["query"] == pytest.approx(1200 * 0.7 - 1)
    assert widths["[await]"] == pytest.approx(1200 * 0.5 - 1)
    query = next(b for b in boxes if b[0] == "query")
    assert "total 70.00 ms (70.0%)" in query[1] and "your code" in query[1]
    run = next(b for b in boxes if b[0] == "run")
    assert run[3] == library_color(name_hash("run")) and "library" in run[1]
    assert query[3] == user_color(name_hash("query"))
    assert ">GET /x</text>" in svg
    assert "<script" not in svg


def test_untrusted_names_stay_text() -> None:
    tree = CallTree(backend="test")
    for i, name in enumerate(HOSTILE):
        tree.add_stack([("main", "app.py", 1), (name, f"/srv/{name}.py", i)], 0.01)
    svg = render(tree, "svg", title=HOSTILE[0])
    root = ET.fromstring(svg)  # well-formed despite control characters
    assert not list(root.iter(f"{NS}script"))
    assert all(
        set(el.attrib)
        <= {
            "x",
            "y",
            "width",
            "height",
            "fill",
            "transform",
            "font-size",
            "font-weight",
            "font-family",
            "viewBox",
            "xmlns",
        }
        for el in root.iter()
    )
    titles = " ".join(t.text or "" for t in root.iter(f"{NS}title"))
    assert "</text><script>alert(1)</script>" in titles  # intact, as text
    assert "ctrl\ufffd\ufffd\ufffd" in titles and "lone \ufffd surrogate" in titles
    assert "\U0001f600 emoji" in titles


def test_narrow_frames_are_left_out() -> None:
    tree = CallTree(backend="test")
    tree.add_stack([("main", "/srv/app/main.py", 1), ("big", "/srv/app/big.py", 1)], 10.0)
    for i in range(5000):
        tree.add_stack([("main", "/srv/app/main.py", 1), (f"tiny{i}", "/srv/t.py", i)], 1e-6)
    svg = render(tree, "svg")
    assert [b[0] for b in frames(svg)] == ["all", "main", "big"]
    assert "5000 frames under 0.5 px not drawn" in svg
    assert len(svg) < 5000


def test_deep_tree_and_empty_tree() -> None:
    deep = CallTree()
    deep.add_stack([(f"f{i}", "app.py", i) for i in range(3000)], 1.0)
    svg = SVGRenderer(row_height=10).render(deep)
    assert re.search(r'height="(\d+)"', svg) is not None
    assert len(frames(svg)) == 3001
    empty = render(CallTree(), "svg")
    assert "no samples were recorded" in empty and frames(empty) == []


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="width"):
        SVGRenderer(width=10)
    with pytest.raises(ValueError, match="row_height"):
        SVGRenderer(row_height=2)


def test_colours_match_the_interactive_component() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    names = ["main", "query", "__call__", "\u00e9t\u00e9", "\U0001f600x", "a" * 200]
    script = (
        "function hash(text){var h=0;for(var i=0;i<text.length;i++)"
        "h=(h*31+text.charCodeAt(i))|0;return Math.abs(h);}"
        f"console.log(JSON.stringify({json.dumps(names)}.map(hash)));"
    )
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [name_hash(n) for n in names]
