"""The HTML around a report payload: one file, no network, scripts allowed by hash only.

The payload goes in a ``<script type="application/json">`` element, escaped by
:func:`~fastprof.renderers.html.script_json` so no string in it can close the element; the two
scripts (the flame-graph component and ``report.js``) and the styles are inlined. The
Content-Security-Policy names each script and the style sheet by its SHA-256, so nothing else
can run or style the page even if markup got in - and ``report.js`` never writes markup: it
builds the page with ``createElement`` and ``textContent``.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from fastprof.renderers.html import flame_assets, script_json

PAYLOAD_ID = "fastprof-report"


def csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@cache
def _asset(name: str) -> str:
    return files("fastprof.renderers").joinpath("assets", name).read_text(encoding="utf-8")


def report_assets() -> tuple[str, str]:
    """``report.js`` and ``report.css`` (kept beside the flame-graph component they use)."""
    return _asset("report.js"), _asset("report.css")


def render_page(payload: Mapping[str, Any], *, title: str) -> str:
    """The page for ``payload`` (a scan or a diff payload; ``report.js`` reads its ``kind``)."""
    flame_js, flame_css = flame_assets()
    report_js, report_css = report_assets()
    style = f"\n{flame_css}\n{report_css}\n"
    csp = (
        "default-src 'none'; "
        f"script-src {csp_hash(flame_js)} {csp_hash(report_js)}; "
        f"style-src {csp_hash(style)}; "
        "base-uri 'none'; form-action 'none'"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>{html.escape(title)}</title>
<style>{style}</style>
</head>
<body class="fpr">
<noscript><p class="fpr-noscript">This report is drawn by JavaScript. The same data is in
findings.json beside this file.</p></noscript>
<div id="fpr-app"></div>
<script type="application/json" id="{PAYLOAD_ID}">{script_json(payload)}</script>
<script>{flame_js}</script>
<script>{report_js}</script>
</body>
</html>
"""
