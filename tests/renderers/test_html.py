from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fastprof.model import CallTree
from fastprof.renderers import render
from fastprof.renderers.html import flame_assets, flame_data, script_json

HOSTILE = [
    "</script><script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "<!--",
    "</SCRIPT >",
    "a\u2028b\u2029c",
    "&lt;already&gt;",
]

DATA_RE = re.compile(
    r'<script type="application/json" id="fastprof-data">(.*?)</script>', re.DOTALL
)


def build() -> CallTree:
    tree = CallTree(backend="test", duration=0.1)
    tree.add_stack([("main", "/srv/app/main.py", 1), ("query", "/srv/app/db.py", 7)], 0.02)
    tree.add_stack(
        [("main", "/srv/app/main.py", 1), ("query", "/srv/app/db.py", 7)], 0.05, awaiting=True
    )
    tree.add_stack(
        [("main", "/srv/app/main.py", 1), ("run", "/v/lib/site-packages/starlette/x.py", 3)],
        0.03,
    )
    return tree


def hostile_tree() -> CallTree:
    tree = CallTree(backend="test")
    for i, name in enumerate(HOSTILE):
        tree.add_stack([("main", "app.py", 1), (name, f"/srv/{name}.py", i)], 0.01)
    tree.add_stack([("main", "</script><b>x</b>.py", 1)], 0.01)
    return tree


def embedded(page: str) -> object:
    match = DATA_RE.search(page)
    assert match is not None
    return json.loads(match.group(1))


def test_page_is_self_contained() -> None:
    page = render(build(), "html", title="GET /x")
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert "@import" not in page
    js, css = flame_assets()
    assert js in page
    assert css in page
    assert "prefers-color-scheme: dark" in css
    assert "FastprofFlame.mount(" in page


def test_embeds_the_tree_as_columns() -> None:
    tree = build()
    data = embedded(render(tree, "html"))
    assert data == json.loads(json.dumps(flame_data(tree)))
    assert isinstance(data, dict)
    names = [data["strings"][i] for i in data["fn"]]
    assert names == ["<root>", "main", "query", "run"]  # pre-order, heaviest sibling first
    assert data["parent"] == [-1, 0, 1, 1]
    assert data["lib"] == [0, 0, 0, 1]
    assert data["total"][0] == pytest.approx(0.1)
    assert data["wait"][2] == pytest.approx(0.05)
    assert data["strings"][data["file"][3]] == "starlette/x.py"


def test_untrusted_strings_never_appear_raw() -> None:
    page = render(hostile_tree(), "html", title="</title><script>alert(2)</script>")
    for raw in [*HOSTILE, "</script><b>x</b>.py", "alert(2)</script>"]:
        if raw == "&lt;already&gt;":
            continue  # contains no markup; its & is escaped below
        assert raw not in page, raw
    match = DATA_RE.search(page)
    assert match is not None
    body = match.group(1)
    assert "<" not in body and ">" not in body and "&" not in body
    assert "\u2028" not in body and "\u2029" not in body
    # the only script-closing tags are the page's own three
    assert page.lower().count("</script") == 3
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(2)&lt;/script&gt;</title>" in page
    # and the strings survive the trip intact
    data = embedded(page)
    assert isinstance(data, dict)
    for raw in HOSTILE:
        assert raw in data["strings"]


def test_script_json_escapes() -> None:
    assert script_json(["</script>", "&", "\u2028"]) == (
        '["\\u003c/script\\u003e","\\u0026","\\u2028"]'
    )


def test_javascript_never_writes_markup() -> None:
    js, css = flame_assets()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js, sink
    assert "textContent" in js
    for text in (js, css):
        assert "</script" not in text.lower()
        assert "<!--" not in text
    assert "global.FastprofFlame = { mount: mount" in js
    assert js.rstrip().endswith("})(window);")


def test_content_security_policy_allows_exactly_the_page_scripts() -> None:
    page = render(build(), "html")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    assert "default-src 'none'" in csp.group(1)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(scripts) == 2
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp.group(1)


def test_deep_tree() -> None:
    tree = CallTree()
    tree.add_stack([(f"f{i}", "app.py", i) for i in range(3000)], 1.0)
    data = flame_data(tree)
    assert data["parent"] == list(range(-1, 3000))


def big_tree(nodes: int) -> CallTree:
    """A random tree of at least ``nodes`` nodes, deep and bushy like a real app's."""
    rng = random.Random(3)
    tree = CallTree(backend="test")
    count = 0
    while count < nodes:
        for _ in range(500):
            depth = rng.randint(5, 60)
            stack = [
                (f"f{rng.randint(0, 30)}", "/srv/app/m.py" if rng.random() < 0.5 else LIB, d)
                for d in range(depth)
            ]
            tree.add_stack(stack, rng.random() * 0.001, awaiting=rng.random() < 0.2)
        count = sum(1 for _ in tree.walk())
    return tree


LIB = "/v/site-packages/l.py"


# A stand-in for the few DOM and canvas calls flamegraph.js makes, so node can run it.
HARNESS = r"""
"use strict";
const fs = require("fs");
class El {
  constructor(tag) { this.tagName = tag; this.children = []; this.style = {}; this.listeners = {};
    this._text = ""; this.hidden = false; this.className = "";
    this.classList = { add: (c) => { this.className += " " + c; } }; }
  get firstChild() { return this.children[0] || null; }
  appendChild(c) { this.children.push(c); return c; }
  removeChild(c) { this.children.splice(this.children.indexOf(c), 1); return c; }
  setAttribute() {}
  addEventListener(t, h) { (this.listeners[t] = this.listeners[t] || []).push(h); }
  removeEventListener(t, h) {
    this.listeners[t] = (this.listeners[t] || []).filter((x) => x !== h);
  }
  fire(t, ev) { (this.listeners[t] || []).forEach((h) => h(ev || {})); }
  set textContent(v) { this._text = String(v); this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  set innerHTML(v) { throw new Error("innerHTML used"); }
  get clientWidth() { return 1200; }
  get clientHeight() { return parseFloat(this.style.height) || 0; }
  getBoundingClientRect() { return { left: 0, top: 0, width: 100, height: 40 }; }
  getContext() { return ctx; }
}
const texts = [];
let rects = 0;
const ctx = { setTransform() {}, clearRect() {}, fillRect() { rects++; },
  fillText(t) { texts.push(t); }, measureText(t) { return { width: t.length * 7 }; } };
global.document = { createElement: (t) => new El(t),
  createTextNode: (t) => { const n = new El("#text"); n.textContent = t; return n; } };
global.window = { innerWidth: 1400, innerHeight: 900, devicePixelRatio: 2,
  addEventListener() {}, removeEventListener() {},
  matchMedia: () => ({ matches: false, addEventListener() {}, removeEventListener() {} }),
  requestAnimationFrame: (f) => f() };
new Function(fs.readFileSync(process.argv[2], "utf8"))();
const data = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const root = new El("div");
const flame = window.FastprofFlame.mount(root, data, {});
const [toolbar, crumbs, scroller, , tip] = root.children;
const canvas = scroller.children[0].children[0];
const out = { rects, labels: texts.splice(0) };
flame.search(process.argv[4]);
out.matches = toolbar.children[1].textContent;
texts.length = 0;
flame.setHideLibrary(true);
out.labelsHidden = texts.splice(0);
flame.search("");
canvas.fire("mousemove", { clientX: 5, clientY: 25 });
out.tip = tip.children.map((c) => c.textContent);
canvas.fire("click", { clientX: 5, clientY: 25 });
out.crumbs = crumbs.textContent;
flame.setHideLibrary(false);
flame.zoom(0);
out.crumbsAfter = crumbs.textContent;
flame.destroy();
console.log(JSON.stringify(out));
"""


def run_js(tmp_path: Path, tree: CallTree, query: str) -> dict[str, object]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    js, _ = flame_assets()
    (tmp_path / "harness.js").write_text(HARNESS)
    (tmp_path / "flame.js").write_text(js)
    (tmp_path / "data.json").write_text(script_json(flame_data(tree)))
    done = subprocess.run(
        [node, "harness.js", "flame.js", "data.json", query],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_component_runs_and_hides_library_frames(tmp_path: Path) -> None:
    out = run_js(tmp_path, build(), "query")
    assert out["labels"] == ["all", "main", "run", "query", "[await]"]
    assert out["matches"] == "1 frame, 70.00 ms (70.0%)"
    assert out["labelsHidden"] == ["all", "main", "query", "[await]"]  # starlette frame hidden
    assert out["tip"] == [
        "main",
        "/srv/app/main.py:1",
        "total 100.00 ms (100.0% of all)",
        "self 0.00 ms",
        "your code",
    ]
    assert out["crumbs"] == "all\u203amain"
    assert out["crumbsAfter"] == "all"


def test_component_handles_a_50k_node_tree(tmp_path: Path) -> None:
    tree = big_tree(50_000)
    out = run_js(tmp_path, tree, "f3")
    rects = out["rects"]
    assert isinstance(rects, int)
    # the harness's view: 1200 px wide, 675 px (38 rows) tall; nothing under half a pixel
    assert 0 < rects <= 38 * 1200 * 2
    assert str(out["matches"]).split()[0].isdigit()


def test_component_skips_frames_narrower_than_a_pixel(tmp_path: Path) -> None:
    tree = CallTree(backend="test")
    tree.add_stack([("main", "/srv/app/main.py", 1), ("big", "/srv/app/big.py", 1)], 10.0)
    for i in range(50_000):
        tree.add_stack([("main", "/srv/app/main.py", 1), (f"tiny{i}", "/srv/t.py", i)], 1e-6)
    out = run_js(tmp_path, tree, "tiny")
    assert out["labels"] == ["all", "main", "big"]
    assert out["rects"] == 3  # all, main, big: the 50,000 tiny frames are not drawn
    assert out["matches"] == "50000 frames, 50.00 ms (0.5%)"
