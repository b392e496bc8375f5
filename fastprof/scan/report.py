"""What a scan writes: ``findings.json``, ``index.html``, and per-route flame graph files.

``index.html`` is one self-contained page (data embedded as escaped JSON, the flame-graph
component inlined, a Content-Security-Policy that allows only its own scripts): a table of
routes, the findings by severity with their evidence and advice, and each route's flame graph.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re

import orjson

from fastprof.findings import SEVERITIES
from fastprof.model import CallTree
from fastprof.renderers import render
from fastprof.renderers.html import flame_assets, flame_data, script_json
from fastprof.renderers.speedscope import SpeedscopeRenderer
from fastprof.scan.results import ScanResult


def slug(route: str) -> str:
    """A file name for a route key: ``GET /users/{id}`` -> ``GET_users_id``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", route).strip("_") or "root"


def write_report(result: ScanResult, trees: dict[str, CallTree], out: str) -> None:
    os.makedirs(os.path.join(out, "routes"), exist_ok=True)
    for route in result["routes"]:
        tree = trees.get(route["route"])
        if tree is None:
            continue
        name = slug(route["route"])
        speedscope = os.path.join("routes", f"{name}.speedscope.json")
        collapsed = os.path.join("routes", f"{name}.collapsed")
        saved = os.path.join("routes", f"{name}.tree.json")
        with open(os.path.join(out, saved), "wb") as f:
            f.write(tree.to_json())
        with open(os.path.join(out, speedscope), "w", encoding="utf-8") as f:
            f.write(SpeedscopeRenderer().render(tree, title=route["route"]))
        with open(os.path.join(out, collapsed), "w", encoding="utf-8") as f:
            f.write(render(tree, "collapsed"))
        route["files"] = {"speedscope": speedscope, "collapsed": collapsed, "tree": saved}
    with open(os.path.join(out, "findings.json"), "wb") as f:
        f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as f:
        f.write(render_html(result, trees))


_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("fastprof-scan").textContent);
  var flames = data.flames, select = document.getElementById("fp-route");
  var holder = document.getElementById("fp-flame"), mounted = null;
  function show(route) {
    if (mounted && mounted.destroy) { mounted.destroy(); }
    holder.textContent = "";
    if (!flames[route]) {
      holder.textContent = "No samples for this route.";
      return;
    }
    mounted = window.FastprofFlame.mount(holder, flames[route], {});
  }
  Object.keys(flames).forEach(function (route) {
    var option = document.createElement("option");
    option.value = route;
    option.textContent = route;
    select.appendChild(option);
  });
  select.addEventListener("change", function () { show(select.value); });
  if (select.options.length) { show(select.options[0].value); }
  var table = document.getElementById("fp-routes");
  Array.prototype.forEach.call(table.querySelectorAll("th"), function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var descending = th.getAttribute("data-order") !== "desc";
      th.setAttribute("data-order", descending ? "desc" : "asc");
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute("data-value");
        var y = b.cells[column].getAttribute("data-value");
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
"""

_CSS = """
body.fp-report { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 1rem;
  max-width: 1200px; color: #1d1f23; background: #fff; }
@media (prefers-color-scheme: dark) {
  body.fp-report { color: #e6e6e6; background: #15171a; }
  .fp-table th { background: #23262b !important; }
  .fp-finding { background: #1d2024 !important; }
}
.fp-report h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
.fp-report h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; }
.fp-muted { color: #778; }
.fp-table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
.fp-table th, .fp-table td { padding: .3rem .5rem; border-bottom: 1px solid #8884;
  text-align: right; white-space: nowrap; }
.fp-table th:first-child, .fp-table td:first-child { text-align: left; white-space: normal;
  word-break: break-all; }
.fp-table th { cursor: pointer; background: #f2f3f5; position: sticky; top: 0; }
.fp-worst td { font-weight: 600; color: #b3261e; }
.fp-finding { border-left: 4px solid #888; background: #f7f7f9; padding: .5rem .8rem;
  margin: .6rem 0; border-radius: 4px; }
.fp-high { border-left-color: #d93025; } .fp-medium { border-left-color: #f29900; }
.fp-low { border-left-color: #1a73e8; }
.fp-finding pre { overflow-x: auto; font-size: 12px; white-space: pre-wrap;
  word-break: break-word; }
.fp-badge { font-size: 11px; text-transform: uppercase; letter-spacing: .05em;
  padding: 1px 6px; border-radius: 8px; border: 1px solid currentColor; }
#fp-flame { min-height: 200px; }
.fp-scroll { overflow-x: auto; }
"""


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def render_html(result: ScanResult, trees: dict[str, CallTree]) -> str:
    esc = html.escape
    flame_js, flame_css = flame_assets()
    routes = result["routes"]
    worst = max(routes, key=lambda r: r["latency_ms"]["p99"], default=None)
    rows = []
    for route in routes:
        lat = route["latency_ms"]
        cells = [
            (route["route"], esc(route["route"])),
            (route["rps"], f"{route['rps']:.1f}"),
            (lat["p50"], f"{lat['p50']:.1f}"),
            (lat["p90"], f"{lat['p90']:.1f}"),
            (lat["p99"], f"{lat['p99']:.1f}"),
            (route["errors"], str(route["errors"])),
            (route["queries_per_request"], f"{route['queries_per_request']:.1f}"),
            (route["blocked_ms"], f"{route['blocked_ms']:.1f}"),
        ]
        css = ' class="fp-worst"' if route is worst and len(routes) > 1 else ""
        rows.append(
            f"<tr{css}>"
            + "".join(f'<td data-value="{esc(str(v))}">{text}</td>' for v, text in cells)
            + "</tr>"
        )
    findings_html = []
    for severity in SEVERITIES:
        group = [f for f in result["findings"] if f["severity"] == severity]
        if not group:
            continue
        findings_html.append(f"<h3>{severity.capitalize()} ({len(group)})</h3>")
        for finding in group:
            loc = finding.get("location")
            where = f"{loc['file']}:{loc['line']} in {loc['function']}" if loc else "the app"
            evidence = orjson.dumps(finding["evidence"], option=orjson.OPT_INDENT_2).decode()
            findings_html.append(
                f'<div class="fp-finding fp-{severity}">'
                f'<span class="fp-badge">{esc(severity)}</span> '
                f"<strong>{esc(finding['title'])}</strong>"
                f'<div class="fp-muted">{esc(finding["kind"])} · '
                f"{esc(finding['route'] or 'app-level')} · {esc(where)} · "
                f"seen {finding.get('count', 1)} times</div>"
                f"<p>{esc(finding['advice'])}</p>"
                f"<details><summary>Evidence</summary><pre>{esc(evidence)}</pre></details>"
                "</div>"
            )
    skipped = "".join(
        f"<li><code>{esc(s['route'])}</code>: {esc(s['reason'])}</li>" for s in result["skipped"]
    )
    data = {
        "flames": {
            key: flame_data(tree)
            for key, tree in trees.items()
            if any(r["route"] == key for r in routes)
        }
    }
    csp = (
        f"default-src 'none'; script-src {_hash(flame_js)} {_hash(_SCRIPT)}; "
        "style-src 'unsafe-inline'"
    )
    settings = result["settings"]
    summary = (
        f"{len(routes)} routes · {len(result['findings'])} findings · "
        f"{settings.get('concurrency')} connections, {settings.get('duration')} s per route · "
        f"started {result['started_at']}"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>fastprof scan: {esc(result["target"])}</title>
<style>{flame_css}{_CSS}</style>
</head>
<body class="fp-report">
<h1>fastprof scan: {esc(result["target"])}</h1>
<p class="fp-muted">{esc(summary)}</p>
<h2>Routes</h2>
<div class="fp-scroll"><table class="fp-table" id="fp-routes">
<thead><tr><th>route</th><th>req/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>
<th>errors</th><th>queries/req</th><th>blocked ms/req</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></div>
<h2>Findings</h2>
{"".join(findings_html) or "<p>No findings.</p>"}
<h2>Flame graph</h2>
<p><label>Route <select id="fp-route"></select></label></p>
<div id="fp-flame"></div>
{f"<h2>Skipped routes</h2><ul>{skipped}</ul>" if skipped else ""}
<script type="application/json" id="fastprof-scan">{script_json(data)}</script>
<script>{flame_js}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""
