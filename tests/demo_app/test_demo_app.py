"""The demo app: every route answers, each twin returns its pitfall's body, each pitfall is one.

The app is served through httpx's ASGI transport with its lifespan (database seeded, pools
filled). Besides equal bodies, the tests check that each pitfall really does what it claims
(the queries it runs, the connections it opens, the loop it stalls, the encoder it goes
through) and its twins do not - so the demo stays a fair test for the detectors. The last
tests run the detectors themselves over the app, as ``fastprof scan`` does.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from starlette.middleware.base import BaseHTTPMiddleware

import demo_app.routes.caching as caching
from demo_app.cache import SmallTTLCache
from demo_app.catalog import OTHER_ROUTES, PAIRS
from demo_app.main import create_app
from demo_app.resources import CATALOG_BOOKS
from demo_app.timing import ProcessTimeMiddleware
from tests.conftest import REQUIRE_SERVICES, require_service

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROUTE_PAIRS = [pair for pair in PAIRS if not pair.app_level]
SAMPLE_PARAMS = {"author_id": 7}


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default configuration: no DATABASE_URL, no REDIS_URL."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)


@pytest.fixture(autouse=True)
def no_demo_leftovers() -> Iterator[None]:
    """The app's own background thread (the local upstream) ends with its lifespan."""
    yield
    upstreams = [t for t in threading.enumerate() if t.name == "demo-upstream"]
    assert not upstreams, f"upstream server threads left running: {upstreams}"


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``app`` (or a middleware around it), inside the FastAPI app's lifespan."""
    inner: FastAPI = app if isinstance(app, FastAPI) else app.app
    async with inner.router.lifespan_context(inner):
        tempdir = inner.state.demo.db._tempdir
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            yield client
    # Shutdown removes the temporary SQLite database it made.
    assert tempdir is None or not os.path.exists(tempdir), tempdir


@dataclass(frozen=True)
class Route:
    path: str
    methods: frozenset[str]
    query: frozenset[str]


def api_routes(app: FastAPI) -> dict[str, Route]:
    """The app's routes as its OpenAPI schema lists them (as the scan discovers them)."""
    routes = {}
    for path, operations in app.openapi()["paths"].items():
        query = {
            param["name"]
            for operation in operations.values()
            for param in operation.get("parameters", [])
            if param["in"] == "query"
        }
        methods = frozenset(method.upper() for method in operations)
        routes[path] = Route(path, methods, frozenset(query))
    return routes


def fill(template: str, params: dict[str, Any] = SAMPLE_PARAMS) -> str:
    return re.sub(r"{(\w+)}", lambda m: str(params[m.group(1)]), template)


async def every_body(app: FastAPI, client: httpx.AsyncClient) -> dict[str, bytes]:
    """GET every route of the app (path parameters filled) and keep its body."""
    bodies = {}
    for path in api_routes(app):
        response = await client.get(fill(path))
        assert 200 <= response.status_code < 300, f"{path}: {response.status_code} {response.text}"
        bodies[path] = response.content
    return bodies


def assert_twins_match(bodies: dict[str, bytes]) -> None:
    for pair in ROUTE_PAIRS:
        for fix in pair.fixes:
            assert bodies[fix] == bodies[pair.pitfall], f"{fix} differs from {pair.pitfall}"


# --- every route, and the pairs -------------------------------------------------------------


async def test_every_route_answers_and_each_twin_returns_its_pitfalls_body(embedded: None) -> None:
    app = create_app()
    async with serve(app) as client:
        bodies = await every_body(app, client)
        assert (await client.get("/openapi.json")).status_code == 200
    assert_twins_match(bodies)
    # ... and the bodies are the data they claim to be, not two equal empty answers.
    authors = httpx.Response(200, content=bodies["/pitfall/n-plus-one/orm"]).json()
    assert len(authors) == 50
    assert [a["id"] for a in authors] == list(range(1, 51))
    assert all(3 <= len(a["books"]) <= 10 for a in authors)
    catalog = httpx.Response(200, content=bodies["/pitfall/serialization/catalog"]).json()
    assert catalog["count"] == len(catalog["books"]) == CATALOG_BOOKS
    assert 1_000_000 <= len(bodies["/pitfall/serialization/catalog"]) <= 3_000_000
    report = httpx.Response(200, content=bodies["/pitfall/caching/report"]).json()
    assert len(report["rows"]) == 10 and report["rows"][0]["books"] == 10
    assert (
        httpx.Response(200, content=bodies["/pitfall/duplicate/authors/{author_id}"]).json()["id"]
        == 7
    )


def test_the_catalog_names_every_pitfall_and_twin_route_and_nothing_else() -> None:
    app = create_app()
    routes = set(api_routes(app))
    listed = {p for pair in ROUTE_PAIRS for p in (pair.pitfall, *pair.fixes)}
    assert listed | set(OTHER_ROUTES) == routes
    for pair in ROUTE_PAIRS:
        assert pair.pitfall.startswith("/pitfall/")
        assert all(fix.startswith("/fixed/") for fix in pair.fixes)
        # A reader finds the twin by swapping the prefix.
        assert pair.pitfall.replace("/pitfall/", "/fixed/", 1) in pair.fixes
    for pair in PAIRS:
        assert pair.guides
        assert (pair.kind == "event_loop_blocking") == (pair.blocking is not None)


def test_every_guide_cited_exists() -> None:
    seeds = ROOT.parent / "shared" / "seeds"
    if not seeds.is_dir():
        pytest.skip(f"the guides are not at {seeds}")
    for pair in PAIRS:
        for guide in pair.guides:
            assert list(seeds.glob(f"{guide}_*.txt")), f"{pair.pitfall}: no guide {guide}"


async def test_an_unknown_author_is_a_404_on_both_duplicate_routes(embedded: None) -> None:
    app = create_app()
    async with serve(app) as client:
        pitfall = await client.get("/pitfall/duplicate/authors/99999")
        fixed = await client.get("/fixed/duplicate/authors/99999")
    assert pitfall.status_code == fixed.status_code == 404
    assert pitfall.content == fixed.content


async def test_index_lists_the_pairs(embedded: None) -> None:
    app = create_app()
    async with serve(app) as client:
        pairs = (await client.get("/")).json()["pairs"]
    assert [p["pitfall"] for p in pairs] == [p.pitfall for p in PAIRS]


# --- each pitfall is one, each twin is not --------------------------------------------------


@dataclass
class Statements:
    """SQL statements run through the app's engines and its shared aiosqlite connection."""

    seen: list[str] = field(default_factory=list)

    def count(self, fragment: str) -> int:
        return sum(1 for sql in self.seen if fragment.lower() in sql.lower())


@asynccontextmanager
async def watching_statements(app: FastAPI) -> AsyncIterator[Statements]:
    db = app.state.demo.db
    statements = Statements()

    def before(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.seen.append(sql)

    engines = (db.engine.sync_engine, db.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
    await db.sqlite.set_trace_callback(statements.seen.append)
    try:
        yield statements
    finally:
        await db.sqlite.set_trace_callback(None)
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)


async def statements_of(client: httpx.AsyncClient, statements: Statements, path: str) -> Statements:
    statements.seen.clear()
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return Statements(list(statements.seen))


@pytest.mark.parametrize(
    ("pitfall", "fixes"),
    [
        ("/pitfall/n-plus-one/orm", ("/fixed/n-plus-one/orm", "/fixed/n-plus-one/orm-join")),
        ("/pitfall/n-plus-one/orm-sync", ("/fixed/n-plus-one/orm-sync",)),
        ("/pitfall/n-plus-one/raw", ("/fixed/n-plus-one/raw",)),
    ],
)
async def test_n_plus_one_pitfalls_query_per_author_and_twins_do_not(
    embedded: None, pitfall: str, fixes: tuple[str, ...]
) -> None:
    app = create_app()
    async with serve(app) as client, watching_statements(app) as statements:
        seen = await statements_of(client, statements, pitfall + "?limit=20")
        assert seen.count("from books") == 20
        assert seen.count("from authors") == 1
        for fix in fixes:
            seen = await statements_of(client, statements, fix + "?limit=20")
            assert 1 <= len(seen.seen) <= 2, seen.seen
            assert seen.count("from books") + seen.count("join books") <= 1


async def test_the_duplicate_pitfall_runs_one_statement_twice_and_its_twin_once(
    embedded: None,
) -> None:
    app = create_app()
    async with serve(app) as client, watching_statements(app) as statements:
        pitfall = await statements_of(client, statements, "/pitfall/duplicate/authors/7")
        fixed = await statements_of(client, statements, "/fixed/duplicate/authors/7")
    assert len(pitfall.seen) == 2 and pitfall.seen[0] == pitfall.seen[1]
    assert fixed.seen == pitfall.seen[:1]


async def test_pooling_pitfalls_connect_per_request_and_twins_never(
    embedded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiosqlite

    import demo_app.routes.pooling as pooling

    made: list[str] = []

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            made.append(name)
            return real(*args, **kwargs)

        return wrapper

    app = create_app()
    async with serve(app) as client:
        monkeypatch.setattr(aiosqlite, "connect", counting("connect", aiosqlite.connect))
        monkeypatch.setattr(
            pooling, "create_async_engine", counting("engine", pooling.create_async_engine)
        )
        for _ in range(3):
            await client.get("/fixed/pooling/connect")
            await client.get("/fixed/pooling/engine")
        assert made == []
        for _ in range(3):
            await client.get("/pitfall/pooling/connect")
        assert made == ["connect"] * 3
        made.clear()
        await client.get("/pitfall/pooling/engine")
        assert made[0] == "engine"


async def loop_stall(client: httpx.AsyncClient, path: str) -> float:
    """The longest the event loop went without running a 5 ms ticker while ``path`` ran."""
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    response = await client.get(path)
    running = False
    await task
    assert response.status_code == 200, response.text
    return max(gaps)


BLOCKING_PAIRS = [pair for pair in ROUTE_PAIRS if pair.kind == "event_loop_blocking"]


@pytest.mark.parametrize("pair", BLOCKING_PAIRS, ids=[p.pitfall for p in BLOCKING_PAIRS])
async def test_blocking_pitfalls_stall_the_loop_and_twins_do_not(embedded: None, pair: Any) -> None:
    app = create_app()
    async with serve(app) as client:
        # Generous either way: the pitfalls block for ~150 ms, the twins for ~0.
        assert await loop_stall(client, pair.pitfall) >= 0.1
        for fix in pair.fixes:
            assert await loop_stall(client, fix) < 0.1, fix


async def test_the_serialisation_pitfall_goes_through_jsonable_encoder_and_its_twin_does_not(
    embedded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi.routing

    encoded: list[int] = []
    real = fastapi.routing.jsonable_encoder

    def counting(obj: Any, *args: Any, **kwargs: Any) -> Any:
        encoded.append(len(obj["books"]) if isinstance(obj, dict) and "books" in obj else 0)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "jsonable_encoder", counting)
    app = create_app()
    async with serve(app) as client:
        await client.get("/fixed/serialization/catalog")
        assert encoded == []
        await client.get("/pitfall/serialization/catalog")
        assert encoded == [CATALOG_BOOKS]


async def test_the_caches_hit_after_the_first_request(embedded: None) -> None:
    app = create_app()
    async with serve(app) as client:
        for path in ("/fixed/caching/report", "/fixed/caching/report-shared"):
            first, second = await client.get(path), await client.get(path)
            assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
            assert second.headers["x-cache-backend"] == "memory"
            assert first.content == second.content
        uncached = await client.get("/pitfall/caching/report")
        assert "x-cache" not in uncached.headers


def test_the_small_ttl_cache_expires_and_evicts() -> None:
    now = [100.0]
    cache = SmallTTLCache(maxsize=2, ttl=10, timer=lambda: now[0])
    cache["a"] = 1
    cache["b"] = 2
    assert "a" in cache and cache["a"] == 1 and len(cache) == 2
    now[0] += 5
    cache["c"] = 3  # full: the entry expiring first ("a") goes
    assert "a" not in cache and cache.get("a", "gone") == "gone"
    assert cache["b"] == 2 and cache["c"] == 3
    now[0] += 6  # "b" (set at 100) has expired, "c" (set at 105) has not
    assert "b" not in cache and "c" in cache
    with pytest.raises(KeyError):
        cache["b"]


async def test_the_middleware_pair_adds_the_same_header_two_ways(embedded: None) -> None:
    from demo_app.main import app, fixed_app

    assert [m.cls for m in app.user_middleware] == [BaseHTTPMiddleware]
    assert [m.cls for m in fixed_app.user_middleware] == [ProcessTimeMiddleware]
    for demo in (create_app(), create_app(timing_middleware="pure_asgi")):
        async with serve(demo) as client:
            response = await client.get("/fixed/blocking/sleep")
        assert float(response.headers["x-process-time"]) >= 0.15
    with pytest.raises(ValueError, match="timing_middleware"):
        create_app(timing_middleware="gzip")  # type: ignore[arg-type]


def test_the_app_objects_named_in_the_catalog_exist() -> None:
    for pair in PAIRS:
        if pair.app_level:
            for target in (pair.pitfall, *pair.fixes):
                module, _, attr = target.partition(":")
                assert isinstance(getattr(import_module(module), attr), FastAPI)


# --- PostgreSQL and Redis ---------------------------------------------------------------------


def require_package(name: str) -> None:
    try:
        import_module(name)
    except ImportError:
        message = f"the demo's PostgreSQL/Redis mode needs the {name} package"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


async def test_on_postgres_and_redis_every_route_returns_what_it_returns_on_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_service("postgres", "127.0.0.1", 5432)
    require_service("redis", "127.0.0.1", 6379)
    for package in ("asyncpg", "psycopg", "redis"):
        require_package(package)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    embedded_app = create_app()
    async with serve(embedded_app) as client:
        embedded_bodies = await every_body(embedded_app, client)

    monkeypatch.setenv("DATABASE_URL", POSTGRES_URL)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    # Other runs of this test may share the Redis server: a key of this run's own.
    cache_key = f"demo-app-test:{uuid.uuid4().hex}"
    monkeypatch.setattr(caching, "CACHE_KEY", cache_key)
    app = create_app()
    async with serve(app) as client:
        resources = app.state.demo
        assert resources.db.is_postgres and resources.db.pg_pool is not None
        bodies = await every_body(app, client)
        shared = await client.get("/fixed/caching/report-shared")
        assert (shared.headers["x-cache"], shared.headers["x-cache-backend"]) == ("hit", "redis")
        assert await resources.redis.get(cache_key) == shared.content
        await resources.redis.delete(cache_key)
        # The PostgreSQL pitfalls are pitfalls too: a connection per request, a stalled loop.
        assert await loop_stall(client, "/pitfall/async-io/report") >= 0.1
        assert await loop_stall(client, "/fixed/async-io/report") < 0.1
    assert_twins_match(bodies)
    assert bodies == embedded_bodies


# --- scenarios and docs ------------------------------------------------------------------------

REQUEST_KEYS = {"name", "method", "path", "params", "query", "headers", "json", "weight"}
REQUEST_KEYS |= {"expect_status"}


def test_there_is_a_scenario_per_topic() -> None:
    names = {path.stem for path in SCENARIOS}
    assert names >= {"demo", *(pair.topic for pair in PAIRS if pair.topic != "duplicate")}


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_scenarios_parse_and_name_only_routes_of_the_app(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert set(data) <= {"settings", "request"}
    assert set(data.get("settings", {})) <= {"concurrency", "duration", "rate"}
    routes = api_routes(create_app())
    assert data["request"], f"{path.name} has no [[request]]"
    for request in data["request"]:
        assert set(request) <= REQUEST_KEYS, request
        route = routes.get(request["path"])
        assert route is not None, f"{path.name}: {request['path']} is not a route of the app"
        assert request.get("method", "GET") in route.methods
        placeholders = set(re.findall(r"{(\w+)}", request["path"]))
        assert set(request.get("params", {})) == placeholders, request
        assert set(request.get("query", {})) <= route.query, request


async def test_demo_scenario_covers_every_route_discovery_cannot_call(embedded: None) -> None:
    data = tomllib.loads((ROOT / "scenarios" / "demo.toml").read_text(encoding="utf-8"))
    covered = {request["path"] for request in data["request"]}
    app = create_app()
    needs_params = {path for path in api_routes(app) if "{" in path}
    assert needs_params and needs_params <= covered
    async with serve(app) as client:
        for request in data["request"]:
            response = await client.get(fill(request["path"], request["params"]))
            assert response.status_code == request["expect_status"]


def test_the_docs_table_lists_every_pair() -> None:
    text = (ROOT / "docs" / "demo.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    for pair in PAIRS:
        row = next((r for r in rows if f"`{pair.pitfall}`" in r), None)
        assert row is not None, f"docs/demo.md has no row for {pair.pitfall}"
        for fix in pair.fixes:
            assert f"`{fix}`" in row, f"{fix} missing from the row of {pair.pitfall}"
        assert (f"`{pair.kind}`" if pair.kind else "none") in row
        for guide in pair.guides:
            assert guide in row


# --- the detectors, over the whole app ----------------------------------------------------------
#
# What ``fastprof scan demo_app.main:app`` must find, checked through the middleware directly:
# each route is called a few times and the findings that appear meanwhile are its own.

VARIANTS = {"app": "base_http", "fixed_app": "pure_asgi"}


#: Kinds that need a crowd of requests at once (pool_exhaustion) or judge repeated traffic
#: (cache_opportunity, off in scans of discovered routes as it is here): not in this scan.
CROWD_KINDS = frozenset({"pool_exhaustion", "cache_opportunity"})


def _sequential_kinds() -> frozenset[str]:
    from fastprof.detectors import DETECTORS

    return frozenset(DETECTORS) - CROWD_KINDS


SEQUENTIAL_KINDS = _sequential_kinds()


def _available_kinds() -> list[str]:
    from fastprof.detectors import detector_class

    kinds = []
    for kind in SEQUENTIAL_KINDS:
        try:
            detector_class(kind)
        except ImportError:
            continue
        kinds.append(kind)
    return kinds


@dataclass
class Scanned:
    kinds: list[str]
    #: findings about the whole app (route None), whenever they were reported
    app_level: list[Any]
    #: route template -> the request findings that appeared while it was being called
    by_path: dict[str, list[Any]]


async def _scan(app: FastAPI, kinds: list[str]) -> Scanned:
    from fastprof import FastprofMiddleware

    mw = FastprofMiddleware(app, detect=kinds)
    by_path: dict[str, list[Any]] = {}
    try:
        async with serve(mw) as client:
            for path in api_routes(app):
                before = len(mw.store.findings)
                for _ in range(3):
                    response = await client.get(fill(path))
                    assert response.status_code == 200, f"{path}: {response.text}"
                    await asyncio.sleep(0.05)  # let the loop watchdog report
                by_path[path] = list(mw.store.findings)[before:]
    finally:
        mw.close()
    app_level = [f for found in by_path.values() for f in found if f.route is None]
    for path, found in by_path.items():
        by_path[path] = [f for f in found if f.route is not None]
    return Scanned(kinds, app_level, by_path)


@pytest.fixture(scope="module")
def scans() -> Iterator[Callable[[str], Scanned]]:
    """Scan an app variant on first use (each takes a few seconds), embedded configuration."""
    done: dict[str, Scanned] = {}

    def scan(variant: str) -> Scanned:
        if variant not in done:
            kinds = _available_kinds()
            app = create_app(timing_middleware=VARIANTS[variant])  # type: ignore[arg-type]
            done[variant] = asyncio.run(_scan(app, kinds))
        return done[variant]

    saved = {name: os.environ.pop(name, None) for name in ("DATABASE_URL", "REDIS_URL")}
    try:
        yield scan
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("pair", ROUTE_PAIRS, ids=[p.pitfall for p in ROUTE_PAIRS])
def test_the_detectors_find_each_pitfall_and_nothing_on_its_twins(
    scans: Callable[[str], Scanned], pair: Any, variant: str
) -> None:
    scanned = scans(variant)
    if pair.kind in SEQUENTIAL_KINDS and pair.kind not in scanned.kinds:
        pytest.skip(f"the {pair.kind} detector is not importable here")
    found = {f.kind for f in scanned.by_path[pair.pitfall]}
    # one request at a time: a crowd-only kind cannot show here (the demo scan test has it)
    if pair.kind in SEQUENTIAL_KINDS:
        assert pair.kind in found, scanned.by_path[pair.pitfall]
    assert found <= {pair.kind, *pair.also}, scanned.by_path[pair.pitfall]
    for fix in pair.fixes:
        on_twin = [f for f in scanned.by_path[fix] if f.kind not in pair.also]
        assert on_twin == [], (fix, on_twin)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_middleware_pitfall_is_an_app_level_finding(
    scans: Callable[[str], Scanned], variant: str
) -> None:
    scanned = scans(variant)
    if "middleware_overhead" not in scanned.kinds:
        pytest.skip("the middleware_overhead detector is not importable yet")
    if variant == "app":
        assert [f.kind for f in scanned.app_level] == ["middleware_overhead"], scanned.app_level
        assert scanned.app_level[0].location.function == "add_process_time_header"
    else:
        assert scanned.app_level == []


def test_each_request_finding_names_its_route(scans: Callable[[str], Scanned]) -> None:
    scanned = scans("app")
    for path, findings in scanned.by_path.items():
        for finding in findings:
            assert finding.route == f"GET {path}", (finding.kind, finding.route, path)


@pytest.mark.usefixtures("embedded")
async def test_the_tiny_pool_makes_a_crowd_wait_and_its_twin_does_not() -> None:
    from fastprof import FastprofMiddleware

    mw = FastprofMiddleware(create_app(), detect=["pool_exhaustion"])
    try:
        async with serve(mw) as client:
            for path in ("/pitfall/pooling/pool-size", "/fixed/pooling/pool-size"):
                for _ in range(2):
                    responses = await asyncio.gather(*[client.get(path) for _ in range(8)])
                    assert all(r.status_code == 200 for r in responses)
    finally:
        mw.close()
    routes = {f.route for f in mw.store.findings}
    assert routes == {"GET /pitfall/pooling/pool-size"}, mw.store.findings
    worst = max(mw.store.findings, key=lambda f: f.evidence["wait_ms"])
    assert worst.evidence["pool_size"] == 2 and worst.evidence["peak_waiting"] >= 4
    assert worst.location is not None and worst.location.function == "tiny_pool"
