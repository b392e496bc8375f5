"""The report page: self-contained, scripts allowed by hash, untrusted strings inert."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from fastprof.renderers.html import flame_assets
from fastprof.report.page import PAYLOAD_ID, render_page, report_assets
from fastprof.scan.report import render_html
from tests.report.fixtures import PAYLOADS, hostile, sample

PAYLOAD_RE = re.compile(
    rf'<script type="application/json" id="{PAYLOAD_ID}">(.*?)</script>', re.DOTALL
)


def payload_of(page: str) -> Any:
    match = PAYLOAD_RE.search(page)
    assert match is not None
    return json.loads(match.group(1))


def sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_page_is_self_contained(tmp_path: Path) -> None:
    page = render_html(*sample(tmp_path))  # type: ignore[arg-type]
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    # the one URL is the SVG namespace report.js creates histogram elements in
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]
    flame_js, flame_css = flame_assets()
    report_js, report_css = report_assets()
    for asset in (flame_js, flame_css, report_js, report_css):
        assert asset in page


def test_csp_names_exactly_the_page_scripts_and_style(tmp_path: Path) -> None:
    page = render_html(*sample(tmp_path))  # type: ignore[arg-type]
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = csp.group(1)
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(scripts) == 2
    script_src = re.search(r"script-src ([^;]+);", policy)
    assert script_src is not None
    assert sorted(script_src.group(1).split()) == sorted(sha(s) for s in scripts)
    styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    assert len(styles) == 1 and f"style-src {sha(styles[0])}" in policy


def test_payload_carries_the_scan(tmp_path: Path) -> None:
    result, trees = sample(tmp_path)
    data = payload_of(render_html(result, trees))  # type: ignore[arg-type]
    assert data["kind"] == "scan" and data["target"] == "shop.main:app"
    assert [r["route"] for r in data["routes"]] == ["GET /", "GET /authors", "GET /health"]
    authors = data["routes"][1]
    assert [data["findings"][i]["kind"] for i in authors["findings"]] == ["n_plus_one"]
    assert authors["histogram"]["count"] == 200
    flame = data["flames"][authors["flame"]]
    assert "endpoint_authors" in flame["strings"]


def test_untrusted_strings_never_appear_raw(tmp_path: Path) -> None:
    result, trees = hostile(tmp_path)
    page = render_html(result, trees)  # type: ignore[arg-type]
    for payload in PAYLOADS:
        if "<" in payload or "\u2028" in payload:
            assert payload not in page, payload
    # only the page's own three script elements close
    assert page.lower().count("</script") == 3
    assert page.count("<title>") == 1 and "<title>fastprof scan: evil:&lt;script&gt;" in page
    body = PAYLOAD_RE.search(page)
    assert body is not None
    assert not re.search(r"[<>&\u2028\u2029]", body.group(1))
    # and the strings arrive intact
    data = payload_of(page)
    assert data["routes"][0]["route"] == f"GET /items/{PAYLOADS[0]}"
    assert data["findings"][0]["evidence"]["headers"]["User-Agent"].startswith(PAYLOADS[0])


def test_only_relative_file_links_reach_the_page(tmp_path: Path) -> None:
    result, trees = hostile(tmp_path)
    data = payload_of(render_html(result, trees))  # type: ignore[arg-type]
    for route in data["routes"]:
        assert route["files"] == {}  # a javascript: URL, an absolute path, a name with ":"
    result, trees = sample(tmp_path)
    result["routes"][0]["files"] = {"svg": "routes/GET.svg", "tree": "../../etc/x.tree.json"}
    data = payload_of(render_html(result, trees))  # type: ignore[arg-type]
    assert data["routes"][0]["files"] == {"svg": "routes/GET.svg"}


def test_report_js_never_writes_markup() -> None:
    js, css = report_assets()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setTimeout("',
        "srcdoc",
    ):
        assert sink not in js, sink
    for text in (js, css):
        assert "</script" not in text.lower() and "<!--" not in text
        assert "</style" not in text.lower()


def test_title_is_escaped() -> None:
    page = render_page({"kind": "scan"}, title="</title><script>alert(1)</script>")
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
