"""The fix for each finding kind, written once, matched to the packages installed.

Every entry says where its advice comes from: one of the five public FastAPI tuning guides
fastprof is built from (:data:`GUIDES`), a library's own documentation, or a measurement
fastprof makes itself. Some of the guides' advice has aged (``ORJSONResponse`` is deprecated by
current FastAPI, ``aioredis`` now lives in ``redis.asyncio``, ``@app.on_event`` gave way to
lifespan handlers), so an entry may carry a ``when`` predicate on the installed versions and on
the finding's facts; the entries of a kind are tried in order and the first that holds wins::

    advice("slow_serialization", via="fastapi", encode_ms=48.0, suggested_ms=3.1)

A detector passes what it measured as keyword facts; an entry's text is a ``str.format``
template over them (a fact an entry names but the detector did not give prints as ``?``).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

Version = tuple[int, ...]

#: The guides, by the number of their file under the project's seeds (``000``-``004``).
GUIDES: dict[str, str] = {
    "000": "FastAPI performance tuning, kisspeter.github.io/fastapi-performance-optimization",
    "001": "FastAPI Performance Tuning",
    "002": "FastAPI connection keepalive",
    "003": "Optimizing Performance in FastAPI Applications",
    "004": "Performance Optimization for High-Throughput FastAPI Applications",
}

#: FastAPI 0.130.0 serialises a declared return type / response_model straight to JSON bytes
#: with Pydantic; 0.131.0 deprecated ORJSONResponse and UJSONResponse.
FASTAPI_PYDANTIC_JSON = "0.130"
FASTAPI_ORJSON_DEPRECATED = "0.131"
#: ``FastAPI(lifespan=...)`` exists since 0.93; ``redis.asyncio`` (aioredis merged) since 4.2.
FASTAPI_LIFESPAN = "0.93"
REDIS_ASYNCIO = "4.2"


def parse_version(text: str) -> Version:
    """``"0.115.2"`` -> ``(0, 115, 2)``; pre-release and local suffixes are ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


@lru_cache(maxsize=64)
def installed(distribution: str) -> str | None:
    """The installed version of a distribution (None when it is not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True, slots=True)
class Context:
    """What a ``when`` predicate sees: the finding's facts and the installed versions."""

    facts: Mapping[str, Any]
    #: distribution -> version overrides (tests fake versions with this); others are looked up.
    versions: Mapping[str, str | None] = field(default_factory=dict)

    def version(self, distribution: str) -> str | None:
        if distribution in self.versions:
            return self.versions[distribution]
        return installed(distribution)

    def at_least(self, distribution: str, version: str) -> bool:
        found = self.version(distribution)
        return found is not None and parse_version(found) >= parse_version(version)

    def below(self, distribution: str, version: str) -> bool:
        found = self.version(distribution)
        return found is not None and parse_version(found) < parse_version(version)

    def has(self, distribution: str) -> bool:
        return self.version(distribution) is not None


def _always(context: Context) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Advice:
    """One piece of advice for a finding kind, and the condition under which it applies."""

    kind: str
    #: ``str.format`` template over the finding's facts (pass a version in as a fact when the
    #: text should name it).
    text: str
    #: Where it comes from: ``"guide 001: common pitfalls"``, ``"Starlette docs: ..."``,
    #: ``"measured"`` (fastprof's own measurement, given in the finding's evidence).
    sources: tuple[str, ...]
    when: Callable[[Context], bool] = _always

    def render(self, facts: Mapping[str, Any]) -> str:
        body = self.text.format_map(_Facts(facts))
        return f"{body}\nSource: {'; '.join(_cite(s) for s in self.sources)}."


class _Unknown:
    def __format__(self, spec: str) -> str:
        return "?"


class _Facts(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        return _Unknown()


def _cite(source: str) -> str:
    match = re.fullmatch(r"guide (\d{3})(?::\s*(.*))?", source)
    if match is None:
        return "fastprof's measurement (see the evidence)" if source == "measured" else source
    number, section = match.groups()
    title = GUIDES.get(number, "?")
    return f"guide {number} ({title}{': ' + section if section else ''})"


REGISTRY: dict[str, list[Advice]] = {}


def register(*entries: Advice) -> None:
    """Add entries (after those already registered for their kind: earlier entries win)."""
    for entry in entries:
        REGISTRY.setdefault(entry.kind, []).append(entry)


def choose(
    kind: str, /, *, versions: Mapping[str, str | None] | None = None, **facts: Any
) -> Advice:
    """The entry that applies to a finding of ``kind`` with these facts."""
    entries = REGISTRY.get(kind)
    if not entries:
        raise KeyError(f"no advice registered for {kind!r}; kinds: {', '.join(sorted(REGISTRY))}")
    context = Context(facts, versions or {})
    for entry in entries:
        if entry.when(context):
            return entry
    raise LookupError(f"no advice for {kind!r} applies to {dict(facts)!r}")


def advice(kind: str, /, *, versions: Mapping[str, str | None] | None = None, **facts: Any) -> str:
    """The advice text for a finding of ``kind``, given what was measured (``facts``).

    ``versions`` overrides installed versions (``{"fastapi": "0.110.0"}``; None: not installed).
    """
    return choose(kind, versions=versions, **facts).render(facts)


def fastapi_serialises_with_pydantic(versions: Mapping[str, str | None] | None = None) -> bool:
    """Does the installed FastAPI serialise a declared return type with Pydantic to JSON bytes?"""
    return Context({}, versions or {}).at_least("fastapi", FASTAPI_PYDANTIC_JSON)


def _facts_are(**expected: Any) -> Callable[[Context], bool]:
    return lambda c: all(c.facts.get(k) == v for k, v in expected.items())


# -- slow_serialization ---------------------------------------------------------------------
# facts: via ("fastapi": FastAPI's own encoding of the returned value, "json.dumps",
# "JSONResponse"), model (a response model was declared), encoder, encode_ms, suggested,
# suggested_ms, fastapi (the installed version)

register(
    Advice(
        "slow_serialization",
        "Declare the endpoint's return type (`-> list[Item]`) or `response_model=`: FastAPI "
        "{fastapi} then validates the value and serialises it straight to JSON bytes with "
        "Pydantic (in Rust), skipping jsonable_encoder and json.dumps. On this payload: "
        "{encode_ms:.1f} ms now, {suggested_ms:.1f} ms through {suggested} (validation against "
        "your model comes on top). Don't switch to ORJSONResponse: FastAPI deprecated it in "
        f"{FASTAPI_ORJSON_DEPRECATED} because this path is faster.",
        (
            "guide 001: response optimization, use response models",
            "FastAPI 0.130 release notes",
            "measured",
        ),
        when=lambda c: (
            c.at_least("fastapi", FASTAPI_PYDANTIC_JSON)
            and c.facts.get("via") == "fastapi"
            and not c.facts.get("model")
        ),
    ),
    Advice(
        "slow_serialization",
        "The response model is declared but the route's custom `response_class` keeps FastAPI "
        "{fastapi} off its fast path: only with the default response class does it serialise "
        "the model straight to JSON bytes with Pydantic. Drop `response_class=` (or "
        "`default_response_class=`) for this route. On this payload: {encode_ms:.1f} ms now, "
        "{suggested_ms:.1f} ms through {suggested}.",
        ("FastAPI 0.130 release notes", "measured"),
        when=lambda c: (
            c.at_least("fastapi", FASTAPI_PYDANTIC_JSON) and c.facts.get("via") == "fastapi"
        ),
    ),
    Advice(
        "slow_serialization",
        "Return the data itself from an endpoint with a declared return type or "
        "`response_model=` instead of encoding it with the standard library ({encoder}): "
        "FastAPI {fastapi} serialises it with Pydantic straight to JSON bytes. Where you need "
        "the bytes yourself (a cache, a custom Response), use `pydantic_core.to_json(data)` or "
        "`orjson.dumps(data)`. On this payload: {encode_ms:.1f} ms with json, "
        "{suggested_ms:.1f} ms through {suggested}.",
        (
            "guide 001: response optimization, use response models",
            "FastAPI 0.130 release notes",
            "measured",
        ),
        when=lambda c: c.at_least("fastapi", FASTAPI_PYDANTIC_JSON),
    ),
    Advice(
        "slow_serialization",
        "Return `ORJSONResponse(data)` from the endpoint (`from fastapi.responses import "
        "ORJSONResponse`; needs orjson): returning the response object skips jsonable_encoder "
        "as well as json.dumps. On FastAPI {fastapi} a response_model does not help here, its "
        "output still goes through jsonable_encoder (FastAPI 0.130+ serialises a declared "
        "return type with Pydantic instead: upgrading is the other fix). On this payload: "
        "{encode_ms:.1f} ms now ({encoder}), {suggested_ms:.1f} ms through {suggested}.",
        ("guide 000: JSON response classes comparison", "measured"),
        when=lambda c: c.has("fastapi"),
    ),
    Advice(
        "slow_serialization",
        'Encode with orjson: `Response(orjson.dumps(data), media_type="application/json")` '
        "instead of the standard library's json ({encoder}). On this payload: "
        "{encode_ms:.1f} ms now, {suggested_ms:.1f} ms through {suggested}.",
        ("guide 000: JSON response classes comparison", "measured"),
    ),
)

# -- middleware_overhead --------------------------------------------------------------------
# facts: name, form ("decorator" | "class"), library (defined in an installed package),
# module, cost_us (BaseHTTPMiddleware's own cost per request), pure_us (a pure ASGI
# pass-through's), layers (BaseHTTPMiddleware layers in the app)

_PURE_ASGI = (
    "Rewrite it as a pure ASGI middleware: a class with `__init__(self, app)` and "
    "`async def __call__(self, scope, receive, send)` that passes non-HTTP scopes straight "
    "through and wraps `send` to see or change the response (Starlette's GZipMiddleware is "
    "written this way), added with `app.add_middleware(...)`."
)
_BHM_COST = (
    "Measured here, BaseHTTPMiddleware's own machinery adds {cost_us:.0f} µs to every request "
    "(a pure ASGI pass-through: {pure_us:.1f} µs); the app has {layers} such layer(s). It also "
    "keeps changes the endpoint makes to contextvars from reaching the middleware. "
)
_MIDDLEWARE_SOURCES = (
    "guide 000: FastAPI middleware performance tuning",
    "Starlette docs: middleware, BaseHTTPMiddleware limitations",
    "measured",
)

register(
    Advice(
        "middleware_overhead",
        "{name} comes from an installed package ({module}) and is built on BaseHTTPMiddleware. "
        + _BHM_COST
        + "Look for a pure ASGI version of it, or keep it off hot routes.",
        _MIDDLEWARE_SOURCES,
        when=_facts_are(library=True),
    ),
    Advice(
        "middleware_overhead",
        '`@app.middleware("http")` wraps {name} in Starlette\'s BaseHTTPMiddleware. '
        + _BHM_COST
        + _PURE_ASGI,
        _MIDDLEWARE_SOURCES,
        when=_facts_are(form="decorator"),
    ),
    Advice(
        "middleware_overhead",
        "{name} subclasses Starlette's BaseHTTPMiddleware. " + _BHM_COST + _PURE_ASGI,
        _MIDDLEWARE_SOURCES,
    ),
)

# -- event_loop_blocking --------------------------------------------------------------------
# facts: cause ("cpu" | "wait"), call (what blocked, e.g. "time.sleep", "requests.get"),
# blocked_ms, library (the blocking package, e.g. "redis")

register(
    Advice(
        "event_loop_blocking",
        "{call} waited on I/O on the event loop thread for {blocked_ms:.0f} ms, stalling every "
        "other request. Use the asyncio client of redis-py (`redis.asyncio`; aioredis was "
        "merged into it), or declare the endpoint with plain `def` so FastAPI runs it in the "
        "threadpool.",
        ("guide 001: asynchronous programming, common pitfalls", "redis-py docs: asyncio"),
        when=lambda c: c.facts.get("library") == "redis" and c.at_least("redis", REDIS_ASYNCIO),
    ),
    Advice(
        "event_loop_blocking",
        "{call} waited on I/O on the event loop thread for {blocked_ms:.0f} ms, stalling every "
        "other request. Use an async library (httpx.AsyncClient for HTTP, asyncpg or "
        "SQLAlchemy's AsyncSession for databases, redis.asyncio for Redis, asyncio.sleep), "
        "declare the endpoint with plain `def` so FastAPI runs it in the threadpool, or move "
        "the call off the loop with `await asyncio.to_thread(...)`.",
        (
            "guide 001: asynchronous programming, common pitfalls",
            "guide 003: asynchronous programming",
        ),
        when=_facts_are(cause="wait"),
    ),
    Advice(
        "event_loop_blocking",
        "{call} kept the event loop busy for {blocked_ms:.0f} ms of CPU work, stalling every "
        "other request. Move it off the loop: `await asyncio.to_thread(...)` or a plain `def` "
        "endpoint for short work (the GIL still serialises pure-Python CPU work), a process "
        "pool (`loop.run_in_executor(ProcessPoolExecutor(), ...)`) or a task queue for heavy "
        "work; cache results that repeat (functools.lru_cache, cachetools.TTLCache).",
        (
            "guide 004: asynchronous programming (CPU-intensive tasks in separate processes), "
            "in-memory caching",
            "guide 001: common pitfalls",
        ),
    ),
)

# -- n_plus_one -----------------------------------------------------------------------------
# facts: count, fingerprint, lazy_load (an ORM relationship, e.g. "User.posts"), driver

register(
    Advice(
        "n_plus_one",
        "`{lazy_load}` was lazy-loaded {count} times, one query per parent row. Load it with "
        "the parent query: `.options(selectinload(...))` (one extra query for all rows) or "
        "`joinedload(...)` for many-to-one relations. With AsyncSession lazy loading fails "
        "anyway, so eager loading is the way there.",
        ("guide 001: common pitfalls (N+1 query problem)", "guide 004: query optimization"),
        when=lambda c: bool(c.facts.get("lazy_load")),
    ),
    Advice(
        "n_plus_one",
        "The same query ran {count} times in a loop with different parameters. Fetch all the "
        "rows in one query (`WHERE id = ANY($1)` with asyncpg, `WHERE id IN (...)`, or a JOIN) "
        "and group them in Python.",
        ("guide 001: common pitfalls (N+1 query problem)", "guide 004: query optimization"),
    ),
)

# -- duplicate_query ------------------------------------------------------------------------
# facts: count, fingerprint

register(
    Advice(
        "duplicate_query",
        "The same query with the same parameters ran {count} times in one request. Run it once "
        "and pass the result along (a FastAPI dependency's value is cached within a request), "
        "or cache it across requests when it may be a little stale (functools.lru_cache or "
        "cachetools.TTLCache in-process, Redis across workers).",
        (
            "guide 003: caching (cachetools)",
            "guide 004: caching strategies",
            "guide 001: caching strategies",
        ),
    ),
)

# -- connection_per_request -----------------------------------------------------------------
# facts: driver, how ("connect" | "engine" | "pool_connect"), connect_ms

_LIFESPAN = "in the app's lifespan handler (`FastAPI(lifespan=...)`)"
_ON_EVENT = 'in an `@app.on_event("startup")` handler'

register(
    Advice(
        "connection_per_request",
        "A database engine was created during the request ({connect_ms:.1f} ms to connect). "
        "Create the engine (`create_engine`/`create_async_engine`) once, at module level or "
        f"{_LIFESPAN}, and reuse it: it owns the connection pool (size it with `pool_size`, "
        "`max_overflow`).",
        ("guide 004: connection pooling", "guide 001: database optimization"),
        when=lambda c: c.facts.get("how") == "engine" and not c.below("fastapi", FASTAPI_LIFESPAN),
    ),
    Advice(
        "connection_per_request",
        "A new {driver} connection was opened during the request ({connect_ms:.1f} ms). Create "
        f"a pool once {_LIFESPAN} - `asyncpg.create_pool(...)`, or one SQLAlchemy engine - and "
        "borrow a connection per request (`async with pool.acquire() as conn`).",
        (
            "guide 001: database optimization, connection pooling",
            "guide 003: connection pooling",
            "guide 004: connection pooling",
        ),
        when=lambda c: not c.below("fastapi", FASTAPI_LIFESPAN),
    ),
    Advice(
        "connection_per_request",
        "A new {driver} connection was opened during the request ({connect_ms:.1f} ms). Create "
        f"a pool once {_ON_EVENT} (FastAPI {{fastapi}} has no lifespan handlers yet) and borrow "
        "a connection per request (`async with pool.acquire() as conn`).",
        ("guide 001: database optimization, connection pooling", "guide 003: connection pooling"),
    ),
)

# -- threadpool_saturation ------------------------------------------------------------------
# facts: pool ("anyio": AnyIO's thread limiter behind `def` endpoints, sync dependencies and
# run_in_threadpool; "executor": the loop's default executor behind asyncio.to_thread), size

register(
    Advice(
        "threadpool_saturation",
        "Requests queued for one of AnyIO's {size:.0f} worker threads (`def` endpoints, sync "
        "dependencies and run_in_threadpool share them). Make the endpoints that hold a thread "
        "while they wait on I/O `async def` with an async library, so they need no thread; if "
        "the threads really are waiting (not computing), raise the limit at startup: "
        "`anyio.to_thread.current_default_thread_limiter().total_tokens = 100`. CPU-bound "
        "work gains nothing from more threads: move it to a process pool or more workers.",
        (
            "guide 001: asynchronous programming, worker configuration",
            "AnyIO docs: working with threads (default limiter of 40 tokens)",
            "measured",
        ),
        when=_facts_are(pool="anyio"),
    ),
    Advice(
        "threadpool_saturation",
        "Work queued for a thread of the event loop's default executor (`asyncio.to_thread`, "
        "`run_in_executor(None, ...)`; {size:.0f} threads). Use async libraries for I/O so no "
        "thread is needed, or give the loop a bigger executor at startup: "
        "`loop.set_default_executor(ThreadPoolExecutor(max_workers=...))`. CPU-bound work "
        "gains nothing from more threads: use a process pool or more workers.",
        (
            "guide 001: asynchronous programming, worker configuration",
            "Python docs: asyncio.to_thread, loop.set_default_executor",
            "measured",
        ),
    ),
)

# -- cache_opportunity ----------------------------------------------------------------------
# facts: example (path?query), calls, hits (identical repeats a TTL cache would have served),
# hit_rate, ttl_s, repeat_ms (mean time of a repeat), saved_ms, is_async (the endpoint is an
# `async def`), redis (the installed redis-py version, None if absent)

_CACHE_SEEN = (
    "{example} was answered {calls} times; {hits} of the answers ({hit_rate:.0%}) repeated a "
    "body computed less than {ttl_s:g} s before, and each repeat redid {repeat_ms:.1f} ms of "
    "work ({saved_ms:.0f} ms in all). Cache the result, keyed by the path and query parameters "
    "(and the user, if the answer depends on who asks), for as long as it may be stale: "
)
_CACHE_IN_PROCESS_ASYNC = (
    "in this process, look the key up in a `cachetools.TTLCache(maxsize=1024, ttl={ttl_s:g})` "
    "before the work and store the result after it (`functools.lru_cache` does not fit an "
    "`async def`: it would cache the coroutine object, which can be awaited only once); "
)
_CACHE_IN_PROCESS_SYNC = (
    "in this process, `functools.lru_cache(maxsize=...)` on the function that does the work "
    "if it is a pure function of its arguments (its entries never expire), otherwise a "
    "`cachetools.TTLCache(maxsize=1024, ttl={ttl_s:g})` through "
    "`@cachetools.cached(cache, lock=threading.Lock())` (FastAPI runs `def` endpoints in "
    "worker threads); "
)
_CACHE_HTTP = (
    "Where clients or a proxy may reuse the answer, also send `Cache-Control: "
    "max-age={ttl_s:g}` and an `ETag` (answering `If-None-Match` with 304), so that repeats "
    "need not reach the app at all."
)
_CACHE_SOURCES = (
    "guide 001: caching strategies (in-memory caching, Redis caching)",
    "guide 003: caching (cachetools TTLCache)",
    "guide 004: caching strategies (response caching with Redis, lru_cache)",
)
_HTTP_CACHING = "RFC 9111: HTTP caching (Cache-Control, ETag)"


def _redis_asyncio(context: Context) -> bool:
    return context.at_least("redis", REDIS_ASYNCIO)


register(
    Advice(
        "cache_opportunity",
        _CACHE_SEEN
        + _CACHE_IN_PROCESS_ASYNC
        + "across workers, Redis through `redis.asyncio` (redis {redis} is installed; the "
        "aioredis of older guides was merged into it): `await r.get(key)`, and on a miss "
        "`await r.set(key, body, ex={ttl_s:g})`. " + _CACHE_HTTP,
        (*_CACHE_SOURCES, "redis-py docs: asyncio", _HTTP_CACHING, "measured"),
        when=lambda c: bool(c.facts.get("is_async")) and _redis_asyncio(c),
    ),
    Advice(
        "cache_opportunity",
        _CACHE_SEEN
        + _CACHE_IN_PROCESS_ASYNC
        + "across workers, Redis through `redis.asyncio` (`pip install redis`; the aioredis "
        "of older guides was merged into it): `await r.get(key)`, and on a miss "
        "`await r.set(key, body, ex={ttl_s:g})`. " + _CACHE_HTTP,
        (*_CACHE_SOURCES, "redis-py docs: asyncio", _HTTP_CACHING, "measured"),
        when=lambda c: bool(c.facts.get("is_async")),
    ),
    Advice(
        "cache_opportunity",
        _CACHE_SEEN
        + _CACHE_IN_PROCESS_SYNC
        + "across workers, Redis (redis {redis} is installed; `redis.Redis` from a `def` "
        "endpoint): `r.get(key)`, and on a miss `r.set(key, body, ex={ttl_s:g})`. " + _CACHE_HTTP,
        (*_CACHE_SOURCES, _HTTP_CACHING, "measured"),
        when=lambda c: c.has("redis"),
    ),
    Advice(
        "cache_opportunity",
        _CACHE_SEEN
        + _CACHE_IN_PROCESS_SYNC
        + "across workers, Redis (`pip install redis`; `redis.Redis` from a `def` endpoint): "
        "`r.get(key)`, and on a miss `r.set(key, body, ex={ttl_s:g})`. " + _CACHE_HTTP,
        (*_CACHE_SOURCES, _HTTP_CACHING, "measured"),
    ),
)

# -- pool_exhaustion ------------------------------------------------------------------------
# facts: driver ("sqlalchemy" or "asyncpg"), size, max_overflow, capacity, wait_ms, holder (the
# route that held connections longest), hold_ms (its median hold), demand (connections wanted
# at once at the peak: in use + waiting)

_POOL_HOLD = (
    "Or hold a connection for less time: {holder} kept one for a median {hold_ms:.0f} ms. A "
    "connection is held from the first query to the end of the session or `async with` block: "
    "do not await other services, sleep or compute inside it, and end the session before "
    "rendering the response. Each worker process has a pool of its own: keep pool size times "
    "workers (+ overflow) under the database's `max_connections` (PostgreSQL: 100 by default), "
    "or put PgBouncer in front."
)

register(
    Advice(
        "pool_exhaustion",
        "Requests waited {wait_ms:.0f} ms for one of the pool's {capacity} connections "
        "(pool_size={size}, max_overflow={max_overflow}); at the peak {demand} requests wanted "
        "one at once. If the database has room, size the pool for that: "
        "`create_engine(url, pool_size={demand}, max_overflow=10, pool_timeout=5)` (or "
        "`create_async_engine`; a short `pool_timeout` fails fast instead of queueing for "
        "30 s). " + _POOL_HOLD,
        (
            "guide 001: database optimization (connection pooling, pool_size=20, max_overflow=10)",
            "guide 004: database connection pooling",
            "SQLAlchemy docs: connection pooling (QueuePool)",
            "measured",
        ),
        when=_facts_are(driver="sqlalchemy"),
    ),
    Advice(
        "pool_exhaustion",
        "Requests waited {wait_ms:.0f} ms for one of the asyncpg pool's {capacity} "
        "connections; at the peak {demand} requests wanted one at once. If the database has "
        "room, raise the pool's ceiling: "
        "`asyncpg.create_pool(dsn, min_size=..., max_size={demand})`, and pass "
        "`pool.acquire(timeout=5)` to fail fast instead of queueing. " + _POOL_HOLD,
        (
            "guide 001: database optimization (connection pooling)",
            "guide 004: database connection pooling",
            "asyncpg docs: connection pools",
            "measured",
        ),
    ),
)

# -- slow_query -----------------------------------------------------------------------------
# facts: duration_ms, threshold_ms, table, rows (table size, None: unknown), columns (to
# index, "" when the scan filters on nothing), index (the suggested CREATE INDEX), select_star

register(
    Advice(
        "slow_query",
        "The query took {duration_ms:.0f} ms because the database reads all of `{table}` "
        "({rows_text}) to find the rows matching on {columns}. Index the column(s) it filters "
        "on: `{index}` (on a live PostgreSQL table, CONCURRENTLY does not block writes; with "
        "Alembic, `op.create_index(..., postgresql_concurrently=True)` in a migration run "
        "outside a transaction), then check that EXPLAIN shows an Index Scan.{star_text}",
        (
            "guide 001: database optimization (indexing)",
            "guide 004: query optimization (indexes)",
            "PostgreSQL docs: using EXPLAIN; CREATE INDEX CONCURRENTLY",
            "measured",
        ),
        when=lambda c: bool(c.facts.get("index")),
    ),
    Advice(
        "slow_query",
        "The query took {duration_ms:.0f} ms reading all of `{table}` ({rows_text}) with no "
        "filter an index could serve. Ask for less: filter, paginate (`LIMIT`/keyset on an "
        "indexed column), or aggregate in the database; if the answer is reused, cache "
        "it.{star_text}",
        (
            "guide 001: database optimization",
            "guide 004: query optimization (pagination)",
            "measured",
        ),
        when=lambda c: bool(c.facts.get("table")),
    ),
    Advice(
        "slow_query",
        "The query took {duration_ms:.0f} ms (threshold {threshold_ms:.0f} ms) and its plan "
        "shows no full scan of a large table: {plan_text}. Look at the plan's costliest node "
        "(`EXPLAIN (ANALYZE, BUFFERS)` on a copy of the data, never on a write in production), "
        "check for lock waits (`pg_stat_activity.wait_event`), and whether the answer could be "
        "cached.{star_text}",
        (
            "guide 001: database optimization",
            "PostgreSQL docs: using EXPLAIN",
            "measured",
        ),
    ),
)
