"""Every pitfall of the demo, its fixed twin(s), the guide it comes from and what fastprof says.

The one list the index route, the docs table (docs/demo.md) and the tests are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Topic = Literal[
    "blocking",
    "n_plus_one",
    "duplicate",
    "pooling",
    "serialization",
    "middleware",
    "caching",
    "async_io",
    "indexing",
]


@dataclass(frozen=True)
class Pair:
    topic: Topic
    #: a route template, or for an app-level pitfall the ``module:attr`` of the app
    pitfall: str
    fixes: tuple[str, ...]
    #: the finding kind ``fastprof scan`` reports on the pitfall (None: no detector for it; the
    #: scan's latency table shows the difference)
    kind: str | None
    #: the guides under shared/seeds it comes from ("001" is 001_*.txt)
    guides: tuple[str, ...]
    what: str
    #: event_loop_blocking only: "wait" (sleeping, I/O) or "cpu" (running Python)
    blocking: Literal["wait", "cpu"] | None = None
    app_level: bool = False
    #: Other kinds the pitfall *and* its twins may show, for real, because both run the same
    #: deliberately slow stand-in (a 150 ms ``SELECT sleep()`` is a slow query in either).
    also: tuple[str, ...] = ()


PAIRS: tuple[Pair, ...] = (
    Pair(
        "blocking",
        "/pitfall/blocking/sleep",
        ("/fixed/blocking/sleep", "/fixed/blocking/sleep-threadpool", "/fixed/blocking/sleep-def"),
        "event_loop_blocking",
        ("001", "003"),
        "time.sleep in async def vs await asyncio.sleep / run_in_threadpool / a def route",
        blocking="wait",
    ),
    Pair(
        "blocking",
        "/pitfall/blocking/cpu",
        ("/fixed/blocking/cpu",),
        "event_loop_blocking",
        ("001", "004"),
        "150 ms of Python in async def vs run_in_threadpool",
        blocking="cpu",
    ),
    Pair(
        "blocking",
        "/pitfall/blocking/http",
        ("/fixed/blocking/http",),
        "event_loop_blocking",
        ("001", "004"),
        "urllib (sync HTTP) in async def vs a shared httpx.AsyncClient",
        blocking="wait",
    ),
    Pair(
        "n_plus_one",
        "/pitfall/n-plus-one/orm",
        ("/fixed/n-plus-one/orm", "/fixed/n-plus-one/orm-join"),
        "n_plus_one",
        ("001",),
        "async ORM lazy load per author vs selectinload / joinedload",
    ),
    Pair(
        "n_plus_one",
        "/pitfall/n-plus-one/orm-sync",
        ("/fixed/n-plus-one/orm-sync",),
        "n_plus_one",
        ("001",),
        "sync ORM lazy load per author (def route) vs selectinload",
    ),
    Pair(
        "n_plus_one",
        "/pitfall/n-plus-one/raw",
        ("/fixed/n-plus-one/raw",),
        "n_plus_one",
        ("001",),
        "driver query per author vs one IN (...) / = ANY($1) query",
    ),
    Pair(
        "duplicate",
        "/pitfall/duplicate/authors/{author_id}",
        ("/fixed/duplicate/authors/{author_id}",),
        "duplicate_query",
        ("001",),
        "a dependency and the route both load the author vs the dependency's result reused",
    ),
    Pair(
        "pooling",
        "/pitfall/pooling/connect",
        ("/fixed/pooling/connect",),
        "connection_per_request",
        ("001", "003"),
        "asyncpg.connect / aiosqlite.connect per request vs the pool made at startup",
    ),
    Pair(
        "pooling",
        "/pitfall/pooling/engine",
        ("/fixed/pooling/engine",),
        "connection_per_request",
        ("004",),
        "create_async_engine per request vs the app's engine",
    ),
    Pair(
        "pooling",
        "/pitfall/pooling/pool-size",
        ("/fixed/pooling/pool-size",),
        "pool_exhaustion",
        ("001", "004"),
        "8 requests at a time on a 2-connection pool vs the app's 16-connection pool",
    ),
    Pair(
        "indexing",
        "/pitfall/indexing/customer",
        ("/fixed/indexing/customer",),
        "slow_query",
        ("001", "004"),
        "lookup by an unindexed column of 600,000 rows vs by an indexed one",
    ),
    Pair(
        "serialization",
        "/pitfall/serialization/catalog",
        ("/fixed/serialization/catalog",),
        "slow_serialization",
        ("000", "001", "003"),
        "1.3 MB dict through jsonable_encoder vs a declared return type (Pydantic to bytes)",
    ),
    Pair(
        "middleware",
        "demo_app.main:app",
        ("demo_app.main:fixed_app",),
        "middleware_overhead",
        ("000", "001", "003"),
        "X-Process-Time with @app.middleware('http') vs a pure ASGI middleware",
        app_level=True,
    ),
    Pair(
        "caching",
        "/pitfall/caching/report",
        ("/fixed/caching/report", "/fixed/caching/report-shared"),
        "cache_opportunity",
        ("001", "003", "004"),
        "a 20 ms report query on every request vs a 60 s TTL cache (in-process / Redis)",
        also=("slow_query",),
    ),
    Pair(
        "async_io",
        "/pitfall/async-io/report",
        ("/fixed/async-io/report", "/fixed/async-io/report-def"),
        "event_loop_blocking",
        ("001", "002", "003", "004"),
        "sync driver in async def vs async driver in async def / sync driver in def",
        blocking="wait",
        also=("slow_query",),
    ),
)

#: Routes that are neither pitfall nor twin (nothing may be reported on them either).
OTHER_ROUTES: tuple[str, ...] = ("/",)
