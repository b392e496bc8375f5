"""The report in a real browser: Debian's headless Chromium, driven by Playwright.

Opens reports from ``file://`` exactly as a user would, clicks and types, and checks what the
page shows. Screenshots go to ``test-artifacts/`` (gitignored). Without Chromium or the
playwright package the tests skip, unless FASTPROF_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the tests skip (or fail in CI) in the browser fixture
    expect = None

from fastprof.report.diff import diff_payload, render_diff
from fastprof.scan.diff import diff_results
from fastprof.scan.report import write_report
from tests.conftest import REQUIRE_SERVICES
from tests.report.fixtures import PAYLOADS, hostile

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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ROW = 18  # the flame graph's row height, px

APP = """
import sqlite3
import time

from fastapi import FastAPI

app = FastAPI()
_db = []


def db():
    if not _db:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute("create table author (id integer primary key, name text)")
        conn.execute("create table book (id integer primary key, author_id integer, title text)")
        conn.executemany("insert into author values (?, ?)", [(i, f"a{i}") for i in range(30)])
        conn.executemany("insert into book values (?, ?, ?)", [(i, i % 30, "b") for i in range(90)])
        _db.append(conn)
    return _db[0]


@app.get("/")
async def index():
    return {"ok": True}


@app.get("/authors")
def authors():
    out = []
    for (author_id, name) in db().execute("select id, name from author").fetchall():
        books = db().execute("select title from book where author_id = ?", (author_id,)).fetchall()
        out.append({"name": name, "books": [b[0] for b in books]})
    return out


@app.get("/slow")
async def slow():
    time.sleep(0.01)
    return {"slept": True}
"""


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}, and FASTPROF_REQUIRE_SERVICES=1 makes the browser tests mandatory")
    pytest.skip(f"{reason}; install it (Debian: apt-get install chromium; pip install playwright)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        _missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the machine
        _missing("the playwright Python package is not installed")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page and what it reported: console errors, uncaught exceptions, dialogs."""

    def __init__(self, browser: Any, width: int = 1280, height: int = 800) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.set_default_timeout(5000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

        def dialog(d: Any) -> None:
            self.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        self.page.on("dialog", dialog)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    w = Watched(browser)
    yield w
    w.close()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real scan of a three-route app (about three seconds)."""
    project = tmp_path_factory.mktemp("scan")
    (project / "tinyapp.py").write_text(APP)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastprof",
            "scan",
            "tinyapp:app",
            "--out",
            "out",
            "--duration",
            "0.3",
            "--warmup",
            "0.05",
            "--concurrency",
            "4",
            "--detector",
            "n_plus_one",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return project / "out"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def flame_click(page: Any, row: int, x: int = 6) -> None:
    page.locator("#fpr-flame canvas").click(position={"x": x, "y": row * ROW + ROW / 2})


def flame_hover(page: Any, row: int, x: int = 6) -> None:
    canvas = page.locator("#fpr-flame canvas")
    # Scroll first and let the scroll event pass: the component hides its tooltip on scroll.
    canvas.scroll_into_view_if_needed()
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
    canvas.hover(position={"x": x, "y": row * ROW + ROW / 2})


def crumbs(page: Any) -> list[str]:
    texts: list[str] = page.locator("#fpr-flame .fpf-crumb").all_inner_texts()
    return texts


def test_scan_report_in_chromium(scanned: Path, watched: Watched) -> None:
    page = watched.page
    result = json.loads((scanned / "findings.json").read_text())
    assert [f["kind"] for f in result["findings"]] == ["n_plus_one"], result["findings"]
    page.goto((scanned / "index.html").as_uri())

    # overview: the target, every route in the table, the finding
    assert page.locator("h1").inner_text() == "tinyapp:app"
    rows = page.locator("#fpr-routes tbody tr")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.route)")) == sorted(
        r["route"] for r in result["routes"]
    )
    page.get_by_role("button", name="p99").click()  # sort, slowest first
    p99 = {r["route"]: r["latency_ms"]["p99"] for r in result["routes"]}
    order = rows.evaluate_all("rs => rs.map(r => r.dataset.route)")
    assert [p99[k] for k in order] == sorted(p99.values(), reverse=True)
    shot(page, "report-overview.png")

    # a route: click its row; the flame graph zooms on a click and searches
    page.locator('#fpr-routes tbody tr[data-route="GET /authors"]').click()
    expect(page.locator("h1")).to_contain_text("/authors")
    assert page.evaluate("location.hash") == "#route=" + quote("GET /authors", safe="")
    assert page.locator(".fpr-hist rect.fpr-hist-bar").count() > 0
    assert crumbs(page) == ["all"]
    flame_click(page, row=1)
    assert len(crumbs(page)) == 2 and crumbs(page)[0] == "all"
    page.locator("#fpr-flame button.fpf-crumb").first.click()  # back out via the crumb
    assert crumbs(page) == ["all"]
    page.locator("#fpr-flame .fpf-search").fill("authors")
    assert page.locator("#fpr-flame .fpf-matches").inner_text().split()[0] != "0"
    page.locator("#fpr-flame .fpf-search").fill("no_such_function_anywhere")
    assert page.locator("#fpr-flame .fpf-matches").inner_text().startswith("0 frames")
    page.locator("#fpr-flame .fpf-search").fill("")
    # hover: the tooltip gives total and self time and the share
    flame_hover(page, row=0, x=20)
    tip = page.locator("#fpr-flame .fpf-tip")
    assert tip.is_visible() and "total" in tip.inner_text() and "% of all" in tip.inner_text()
    # hide library frames: the first row under "all" is then the user's own code
    page.locator("#fpr-flame .fpf-toggle input").check()
    flame_click(page, row=1)
    assert crumbs(page)[-1] == "authors"
    shot(page, "report-route.png")

    # switch routes from the side list; the flame graph follows
    page.locator(".fpr-side a", has_text="/slow").click()
    expect(page.locator("h1")).to_contain_text("/slow")
    assert crumbs(page) == ["all"]
    assert page.locator('.fpr-side a[aria-current="page"]').inner_text().startswith("GET")

    # a finding: open it on the overview and read its source lines
    page.locator(".fpr-side a", has_text="Overview").click()
    expect(page.locator("h1")).to_have_text("tinyapp:app")
    finding = page.locator("details.fpr-finding").first
    finding.locator("summary").click()
    here = finding.locator(".fpr-source-line.fpr-here")
    location = result["findings"][0]["location"]
    line = Path(location["file"]).read_text().splitlines()[location["line"] - 1]
    assert here.inner_text().split(None, 1)[0] == str(location["line"])
    assert line.strip() in here.inner_text()
    assert finding.locator(".fpr-source-line").count() >= 5  # in context
    assert "SELECT" in finding.locator("pre.fpr-pre").first.inner_text().upper()
    finding.scroll_into_view_if_needed()
    shot(page, "report-finding.png")

    # the finding's own view, from its link
    finding.get_by_role("link", name="Link to this finding").click()
    expect(page.locator(".fpr-crumbs")).to_contain_text("n_plus_one")
    assert page.locator("details.fpr-finding[open]").count() == 1

    # a 400 px window: the side list gives way to a menu
    page.set_viewport_size({"width": 400, "height": 800})
    page.goto((scanned / "index.html").as_uri())
    assert not page.locator(".fpr-side").is_visible()
    page.locator(".fpr-jump select").select_option(label="GET /authors")
    expect(page.locator("h1")).to_contain_text("/authors")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page scrolls sideways at 400 px ({width} px wide)"
    shot(page, "report-narrow.png")

    assert watched.errors == [] and watched.dialogs == []


def test_untrusted_strings_cannot_run_script(tmp_path: Path, watched: Watched) -> None:
    result, trees = hostile(tmp_path / "src")
    out = tmp_path / "out"
    write_report(result, trees, str(out))  # type: ignore[arg-type]
    compared = diff_results(result, result, PAYLOADS[0], PAYLOADS[2])  # type: ignore[arg-type]
    (out / "diff.html").write_text(
        render_diff(diff_payload(compared, result, result, trees, trees))  # type: ignore[arg-type]
    )
    page = watched.page
    for name in ("index.html", "diff.html"):
        page.goto((out / name).as_uri())
        hashes = ["#overview"] + ["#route=" + quote(r["route"], safe="") for r in result["routes"]]
        if name == "index.html":
            hashes += [f"#finding={i}" for i in range(len(result["findings"]))]
        for where in hashes:
            page.evaluate("h => { location.hash = h; }", where)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
            closed = page.locator("details.fpr-finding:not([open]) > summary")
            for _ in range(closed.count()):
                closed.first.click()
            if page.locator("#fpr-flame canvas").count():
                flame_hover(page, row=1, x=30)
                page.locator("#fpr-flame .fpf-search").fill(PAYLOADS[0])
        assert page.evaluate("typeof window.__pwned") == "undefined", name
        # no element came from the data: the page's own three scripts, no images
        assert page.evaluate("document.scripts.length") == 3
        assert page.locator("img, iframe, object, embed, style").count() <= 1  # the one <style>
    # the payloads are shown as text
    page.goto((out / "index.html").as_uri() + "#route=" + quote(result["routes"][0]["route"]))
    assert PAYLOADS[0] in page.locator("h1").inner_text()
    page.goto((out / "index.html").as_uri() + "#finding=0")
    body = page.locator("details.fpr-finding[open]").inner_text()
    assert PAYLOADS[1] in body and "Source not shown" not in body
    assert page.locator(".fpr-source-line.fpr-here").inner_text().endswith("# the line")
    assert page.locator(".fpr-files a").count() == 0  # javascript: and absolute links dropped
    shot(page, "report-hostile.png")
    assert watched.dialogs == []
    assert watched.errors == []


def test_diff_page_in_chromium(tmp_path: Path, watched: Watched) -> None:
    from fastprof.model import CallTree
    from tests.report.fixtures import LIB, sample

    result_a, trees_a = sample(tmp_path / "a")
    result_b, _ = sample(tmp_path / "b")
    user = str(tmp_path / "a" / "shop" / "views.py")
    slow, fast = CallTree(backend="t"), CallTree(backend="t")
    slow.add_stack([("app", LIB, 1), ("list_authors", user, 8), ("lazy_load", user, 12)], 0.3)
    slow.add_stack([("app", LIB, 1), ("list_authors", user, 8), ("render", user, 14)], 0.1)
    fast.add_stack([("app", LIB, 1), ("list_authors", user, 8), ("selectin", user, 10)], 0.05)
    fast.add_stack([("app", LIB, 1), ("list_authors", user, 8), ("render", user, 14)], 0.1)
    trees_a["GET /authors"] = slow
    trees_b = dict(trees_a, **{"GET /authors": fast})
    result_b["routes"][1]["latency_ms"]["mean"] = 1.5
    compared = diff_results(result_a, result_b, "before", "after")  # type: ignore[arg-type]
    page_file = tmp_path / "diff.html"
    payload = diff_payload(compared, result_a, result_b, trees_a, trees_b)  # type: ignore[arg-type]
    page_file.write_text(render_diff(payload))
    page = watched.page
    page.goto(page_file.as_uri())
    assert page.locator("#fpr-routes tbody tr").count() == 3
    page.locator('#fpr-routes tbody tr[data-route="GET /authors"]').click()
    expect(page.locator("#fpr-flame .fpf-legend")).to_be_visible()
    legend = page.locator("#fpr-flame .fpf-legend").inner_text()
    assert "more time in B" in legend and "less time in B" in legend
    flame_click(page, row=2)  # list_authors
    assert crumbs(page)[-1] == "list_authors"
    # lazy_load, gone in B, is the widest child: hover it for A's and B's time
    flame_hover(page, row=1, x=10)
    tip = page.locator("#fpr-flame .fpf-tip").inner_text()
    assert "lazy_load" in tip and "only in A" in tip and "per request" in tip
    shot(page, "report-diff.png")
    assert watched.errors == [] and watched.dialogs == []


def test_dark_mode_and_no_flame_data(tmp_path: Path, browser: Any) -> None:
    from tests.report.fixtures import sample

    result, _ = sample(tmp_path / "src")
    out = tmp_path / "out"
    write_report(result, {}, str(out))  # type: ignore[arg-type]
    context = browser.new_context(color_scheme="dark", viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto((out / "index.html").as_uri() + "#route=" + quote("GET /authors", safe=""))
        assert "No samples" in page.locator("#fpr-flame").inner_text()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(22, 23, 26)"
        assert errors == []
    finally:
        context.close()


def test_a_query_plan_and_pool_holders_are_shown_as_such(tmp_path: Path, watched: Watched) -> None:
    from tests.report.fixtures import sample

    result, _ = sample(tmp_path / "src")
    where = result["findings"][0]["location"]
    result["findings"] = [
        {
            "kind": "slow_query",
            "severity": "high",
            "route": "GET /authors",
            "title": "Slow query (92 ms): full scan of customers",
            "evidence": {
                "sql": "SELECT id FROM customers WHERE email = ?",
                "query_ms": 92.0,
                "plan": {"database": "sqlite", "plan": ["SCAN customers"], "seq_scans": []},
                "suggested_index": "CREATE INDEX ix_customers_email ON customers (email)",
            },
            "location": where,
            "advice": "Index it.",
            "count": 3,
        },
        {
            "kind": "pool_exhaustion",
            "severity": "medium",
            "route": "GET /authors",
            "title": "Waited 101 ms for a database connection",
            "evidence": {
                "wait_ms": 101.0,
                "holders": [
                    {"route": "GET /authors", "checkouts": 78, "median_hold_ms": 34.7},
                    {"route": "GET /health", "checkouts": 2, "median_hold_ms": 1.5},
                ],
            },
            "location": where,
            "advice": "Size the pool.",
            "count": 5,
        },
    ]
    out = tmp_path / "out"
    write_report(result, {}, str(out))  # type: ignore[arg-type]
    page = watched.page
    page.goto((out / "index.html").as_uri() + "#finding=0")
    text = page.locator("main").inner_text()
    assert "QUERY PLAN (SQLITE)" in text.upper() and "SCAN customers" in text
    assert "CREATE INDEX ix_customers_email" in text and "query time" in text.lower()
    page.goto((out / "index.html").as_uri() + "#finding=1")
    rows = page.locator("table.fpr-table").last.locator("tbody tr")
    assert rows.count() == 2
    assert rows.first.inner_text().split("\t")[:3] == ["GET /authors", "78", "34.7 ms"]
    assert watched.errors == [] and watched.dialogs == []
