"""How big the scan report is, how fast it shows a route, and how fast a huge flame graph zooms.

Three measurements, in headless Chromium (Debian's ``chromium``) driven by Playwright:

1. **Size** of the demo app's ``index.html`` (target: under 2 MB).
2. **First route**: the report opened from ``file://`` at ``#route=<first route>``, timed from
   navigation start to the flame graph's first drawn frame (the page marks it with
   ``performance.mark("fastprof:flame-drawn")``), median of ``--runs`` fresh page loads
   (target: under 1 s).
3. **Zoom on 50,000 frames**: a report whose one route has a random deep, bushy call tree of at
   least 50,000 nodes; a click on a frame is timed with ``performance.now()`` from just before
   the click is dispatched to the end of the next animation frame, by which time the graph has
   been laid out and drawn (target: under 100 ms). Zooming in and out alternate.

    .venv/bin/python -m bench.report_render                    # scans the demo app (~1 min)
    .venv/bin/python -m bench.report_render --result out/      # an existing scan's directory
    .venv/bin/python -m bench.report_render --json bench/results/report_render.json

Needs ``/usr/bin/chromium`` (Debian: ``apt-get install chromium``) and the ``playwright`` Python
package (never ``playwright install``: the system browser is used). Results: docs/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_DETECTORS = [
    "event_loop_blocking",
    "n_plus_one",
    "duplicate_query",
    "connection_per_request",
    "slow_serialization",
    "middleware_overhead",
]


def scan_demo(out: Path) -> None:
    from fastprof.detectors import DETECTORS

    detectors: list[str] = []
    for name in DEMO_DETECTORS:
        module = DETECTORS.get(name, "").partition(":")[0]
        try:
            __import__(module)
        except ImportError:
            continue  # a detector still being written: scan with the others
        detectors += ["--detector", name]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "fastprof",
            "scan",
            "demo_app.main:app",
            "--out",
            str(out),
            *detectors,
        ],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def big_tree(nodes: int) -> Any:
    """A random tree of at least ``nodes`` nodes, deep and bushy like a real app's."""
    from fastprof.model import CallTree

    rng = random.Random(3)
    tree = CallTree(backend="bench")
    count = 0
    while count < nodes:
        for _ in range(500):
            depth = rng.randint(5, 60)
            stack = [
                (
                    f"f{rng.randint(0, 30)}",
                    "/srv/app/m.py" if rng.random() < 0.5 else "/v/site-packages/l.py",
                    d,
                )
                for d in range(depth)
            ]
            tree.add_stack(stack, rng.random() * 0.001, awaiting=rng.random() < 0.2)
        count = sum(1 for _ in tree.walk())
    return tree


def big_report(directory: Path, nodes: int) -> tuple[Path, int]:
    from fastprof.scan.report import write_report

    tree = big_tree(nodes)
    result: Any = {
        "schema": "fastprof.scan/1",
        "target": "bench:big",
        "started_at": "2026-01-01T00:00:00+00:00",
        "settings": {},
        "routes": [
            {
                "route": "GET /big",
                "requests": 1,
                "errors": 0,
                "rps": 1.0,
                "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "max": 1.0, "mean": 1.0},
                "queries_per_request": 0.0,
                "blocked_ms": 0.0,
                "status_counts": {"200": 1},
                "error_samples": [],
                "timeouts": 0,
                "source": "openapi",
                "files": {},
            }
        ],
        "skipped": [],
        "findings": [],
    }
    write_report(result, {"GET /big": tree}, str(directory))
    return directory / "index.html", sum(1 for _ in tree.walk())


FIRST_DRAW = """() => new Promise((resolve) => {
  const look = () => {
    const mark = performance.getEntriesByName("fastprof:flame-drawn")[0];
    if (mark) resolve(mark.startTime); else setTimeout(look, 5);
  };
  look();
})"""

ZOOM = """async ([x, y]) => {
  const canvas = document.querySelector("#fpr-flame canvas");
  const rect = canvas.getBoundingClientRect();
  const start = performance.now();
  canvas.dispatchEvent(new MouseEvent("click", {
    bubbles: true, clientX: rect.left + x, clientY: rect.top + y }));
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const took = performance.now() - start;
  return [took, document.querySelectorAll("#fpr-flame .fpf-crumb").length];
}"""


SHOTS = [
    # (file, which page, hash, viewport height); {kind} is the first finding of that kind
    ("overview.png", "scan", "#overview", 800),
    ("route.png", "scan", "#route=GET%20%2Fpitfall%2Fn-plus-one%2Fraw", 1040),
    ("finding.png", "scan", "#finding={slow_serialization}", 1000),
    ("diff.png", "diff", "#route=GET%20%2Fpitfall%2Fn-plus-one%2Fraw", 900),
]

FIND = """kind => [...document.querySelectorAll("details.fpr-finding")]
  .find(d => d.querySelector(".fpr-finding-meta").textContent.startsWith(kind))
  .dataset.finding"""


def screenshots(browser: Any, result_dir: Path, diff_page: Path | None, out: Path) -> None:
    """The README's screenshots: overview, a route, a finding, a diff (1280 px wide)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, which, where, height in SHOTS:
        page_file = result_dir / "index.html" if which == "scan" else diff_page
        if page_file is None:
            continue
        page = browser.new_page(viewport={"width": 1280, "height": height})
        page.goto(page_file.as_uri())
        if "{" in where:
            kind = where[where.index("{") + 1 : where.index("}")]
            where = where.replace("{" + kind + "}", page.evaluate(FIND, kind))
        page.goto(page_file.as_uri() + where)
        if name == "route.png":  # zoomed on the loop that queries, its queries searched for
            toggle = page.locator("#fpr-flame .fpf-toggle input")
            toggle.check()
            page.locator("#fpr-flame canvas").click(position={"x": 40, "y": 2 * 18 + 9})
            toggle.uncheck()
            page.locator("#fpr-flame .fpf-search").fill("execute")
            page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / name))
        page.close()
        print(f"wrote {out / name}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", type=Path, help="an existing scan directory (default: scan)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=50_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--screenshots", type=Path, help="only take the README's screenshots into this folder"
    )
    parser.add_argument("--diff", type=Path, help="with --screenshots: a diff page to shoot")
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="fastprof-bench-report-") as tmp:
        result_dir = options.result
        if result_dir is None:
            result_dir = Path(tmp) / "demo"
            print("scanning the demo app ...", file=sys.stderr)
            scan_demo(result_dir)
        if options.screenshots is not None:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                screenshots(browser, result_dir, options.diff, options.screenshots)
                browser.close()
            return
        index = result_dir / "index.html"
        size = index.stat().st_size
        first_route = json.loads((result_dir / "findings.json").read_text())["routes"][0]["route"]
        big_index, big_nodes = big_report(Path(tmp) / "big", options.nodes)
        from urllib.parse import quote

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            first: list[float] = []
            for _ in range(options.runs):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{index.as_uri()}#route={quote(first_route, safe='')}")
                first.append(page.evaluate(FIRST_DRAW))
                page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{big_index.as_uri()}#route={quote('GET /big', safe='')}")
            big_first = page.evaluate(FIRST_DRAW)
            zooms: list[float] = []
            depth = 1
            for k in range(2 * options.runs):
                # in: the leftmost frame three rows down; out: the zoomed frame on the top row
                # (clicking it zooms out one level)
                y = 3 * 18 + 9 if k % 2 == 0 else 9
                took, crumbs = page.evaluate(ZOOM, [4, y])
                if crumbs == depth:
                    raise SystemExit(
                        f"click {k + 1} did not zoom ({crumbs} crumbs before and after)"
                    )
                depth = crumbs
                zooms.append(took)
            page.close()
            browser.close()

    results = {
        "machine": f"{platform.node()} {os.cpu_count()} cpus, {platform.python_version()}",
        "demo_report_bytes": size,
        "demo_first_route_ms": {"median": statistics.median(first), "max": max(first)},
        "big_tree_nodes": big_nodes,
        "big_report_bytes": big_index.stat().st_size if big_index.exists() else None,
        "big_first_draw_ms": big_first,
        "big_zoom_ms": {"median": statistics.median(zooms), "max": max(zooms)},
    }
    print(f"demo report: {size / 1e6:.2f} MB  [{'PASS' if size < 2e6 else 'FAIL'} < 2 MB]")
    median_first = results["demo_first_route_ms"]["median"]
    print(
        f"first route drawn: median {median_first:.0f} ms, max {max(first):.0f} ms over "
        f"{len(first)} loads  [{'PASS' if median_first < 1000 else 'FAIL'} < 1 s]"
    )
    print(f"{big_nodes:,}-frame tree: first draw {big_first:.0f} ms")
    zoom = results["big_zoom_ms"]
    print(
        f"zoom on it: median {zoom['median']:.1f} ms, max {zoom['max']:.1f} ms over "
        f"{len(zooms)} clicks  [{'PASS' if zoom['max'] < 100 else 'FAIL'} < 100 ms]"
    )
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
