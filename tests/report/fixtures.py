"""Scan results built by hand for the report tests: an ordinary one and a hostile one.

The hostile result carries script payloads in every string a scan copies from the app or its
traffic: route paths, query strings, SQL, headers, exception messages, function and file names,
the source file itself. Each payload, if it ever ran, would set ``window.__pwned`` or call
``alert``; the browser test checks that neither happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastprof.model import CallTree

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "</script><script>window.__pwned=1;alert(1)</script>",
    "<svg onload=alert(1)>",
    "javascript:window.__pwned=1",
    "<!--",
    "\u2028</style><style>*{display:none}</style>",
]
P = " ".join(PAYLOADS)

LIB = "/v/lib/python3.11/site-packages/starlette/routing.py"


def tree(user_file: str, *, extra: str = "") -> CallTree:
    """A small route tree: an endpoint in ``user_file`` under a library frame."""
    t = CallTree(backend="test", duration=0.5)
    t.add_stack(
        [("app", LIB, 1), ("endpoint" + extra, user_file, 10), ("query", user_file, 20)], 0.2
    )
    t.add_stack(
        [("app", LIB, 1), ("endpoint" + extra, user_file, 10), ("render", user_file, 30)], 0.1
    )
    t.add_stack([("app", LIB, 1), ("endpoint" + extra, user_file, 10)], 0.05, awaiting=True)
    t.add_stack([("app", LIB, 1), ("serialize", LIB, 40)], 0.05)
    return t


def histogram() -> dict[str, Any]:
    from fastprof.load.histogram import Histogram

    h = Histogram()
    for i in range(200):
        h.record(0.004 + (i % 20) * 0.0005 + (0.05 if i % 50 == 0 else 0.0))
    return dict(h.to_dict())


def route(key: str, *, p99: float = 12.0, queries: float = 0.0, errors: int = 0) -> dict[str, Any]:
    return {
        "route": key,
        "requests": 200,
        "errors": errors,
        "rps": 150.0,
        "latency_ms": {"p50": 5.0, "p90": 8.0, "p99": p99, "max": 54.0, "mean": 6.0},
        "queries_per_request": queries,
        "blocked_ms": 0.0,
        "status_counts": {"200": 200 - errors, **({"500": errors} if errors else {})},
        "error_samples": [],
        "timeouts": 0,
        "source": "openapi",
        "files": {},
        "latency_histogram": histogram(),
    }


APP_SOURCE = """import sqlite3

from fastapi import FastAPI

app = FastAPI()


def list_authors(db):
    authors = db.execute("select id from author").fetchall()
    out = []
    for (author_id,) in authors:
        books = db.execute("select * from book where author_id = ?", (author_id,))  # N+1
        out.append(books.fetchall())
    return out
"""


def sample(tmp: Path) -> tuple[dict[str, Any], dict[str, CallTree]]:
    """An ordinary result: three routes, two findings with real source files."""
    app = tmp / "shop" / "views.py"
    app.parent.mkdir(parents=True, exist_ok=True)
    app.write_text(APP_SOURCE)
    result: dict[str, Any] = {
        "schema": "fastprof.scan/1",
        "target": "shop.main:app",
        "started_at": "2026-11-25T10:00:00+00:00",
        "settings": {"duration": 1.0, "concurrency": 8, "workers": 1},
        "routes": [
            route("GET /"),
            route("GET /authors", p99=320.0, queries=31.0),
            route("GET /health", p99=2.0),
        ],
        "skipped": [{"route": "POST /authors", "reason": "POST may change data"}],
        "findings": [
            {
                "kind": "n_plus_one",
                "severity": "high",
                "route": "GET /authors",
                "title": "N+1 queries: the same SELECT query ran 30 times",
                "evidence": {
                    "count": 30,
                    "total_ms": 41.5,
                    "sql": "SELECT * FROM book WHERE author_id = ?",
                    "fingerprint": "select * from book where author_id = ?",
                    "driver": "sqlite3",
                    "params_examples": ["(1,)", "(2,)", "(3,)"],
                },
                "location": {"file": str(app), "line": 12, "function": "list_authors"},
                "advice": "Fetch all rows at once.\nSource: guide 001.",
                "count": 12,
            },
            {
                "kind": "middleware_overhead",
                "severity": "medium",
                "route": None,
                "title": "timing runs on BaseHTTPMiddleware: +74 µs per request",
                "evidence": {"cost_us_per_request": 73.9, "pure_asgi_us_per_request": 0.4},
                "location": {"file": str(tmp / "gone.py"), "line": 3, "function": "timing"},
                "advice": "Rewrite it as a pure ASGI middleware.",
                "count": 1,
            },
        ],
        "workers": [4242],
    }
    trees = {
        "GET /": tree(str(app)),
        "GET /authors": tree(str(app), extra="_authors"),
        "GET /health": tree(str(app), extra="_health"),
    }
    return result, trees


def hostile(tmp: Path) -> tuple[dict[str, Any], dict[str, CallTree]]:
    """A result whose every untrusted string carries the payloads."""
    tmp.mkdir(parents=True, exist_ok=True)
    source = tmp / "evil_app.py"
    source.write_text(
        "\n".join(
            [
                "def handler():",
                f"    x = '{PAYLOADS[0]}'",
                f"    y = '{PAYLOADS[1]}'",
                f"    z = '{PAYLOADS[2]}'  # the line",
                "    return x + y + z",
            ]
        )
        + "\n"
    )
    keys = [f"GET /items/{p}" for p in PAYLOADS[:3]] + [f"GET /q?x={PAYLOADS[1]}"]
    result: dict[str, Any] = {
        "schema": "fastprof.scan/1",
        "target": f"evil:{P}",
        "started_at": P,
        "settings": {"duration": 1.0, "headers": {"X-Evil": P}, P: P},
        "routes": [route(k, errors=3) for k in keys],
        "skipped": [{"route": f"POST /{P}", "reason": P}],
        "findings": [],
        "workers": [1],
    }
    for r in result["routes"]:
        r["error_samples"] = [f"500 {P}", f"exception: RuntimeError({P!r})"]
        r["status_counts"][P] = 1
        r["files"] = {"svg": "javascript:window.__pwned=1", "speedscope": "/etc/passwd", "tree": P}
    for k, key in enumerate(keys):
        result["findings"].append(
            {
                "kind": f"kind{P}" if k else "n_plus_one",
                "severity": ["high", "medium", "low", "high"][k],
                "route": key,
                "title": f"title {P}",
                "evidence": {
                    "sql": f"SELECT '{P}' FROM t",
                    "fingerprint": f"select '{P}'",
                    "headers": {"User-Agent": P, "Cookie": P},
                    "query_string": f"q={P}",
                    "exception": f"ValueError: {P}",
                    "stack": [f"{P}:1 in f", {"function": P, "file": P, "line": 3}, [P, P, 4]],
                    "call_sites": [P, P],
                    P: P,
                    "count": 3,
                    "total_ms": 1.5,
                    "encode_ms": 4.0,
                    "suggested_ms": 1.0,
                    "encoder": P,
                    "suggested": P,
                },
                "location": {"file": str(source), "line": 4, "function": P},
                "advice": f"advice {P}\nSource: {P}",
                "count": 2,
            }
        )
    result["findings"].append(
        {
            "kind": "other",
            "severity": "low",
            "route": None,
            "title": P,
            "evidence": {P: [P, {"a": P}]},
            "location": {"file": P, "line": 1, "function": P},
            "advice": P,
            "count": 1,
        }
    )
    trees = {}
    for key in keys:
        t = tree(str(source))
        for p in PAYLOADS:
            t.add_stack([("app", LIB, 1), (p, f"/srv/{p}.py", 5)], 0.02)
        trees[key] = t
    return result, trees
