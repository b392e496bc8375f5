"""cache_opportunity: the same GET answered with the same body, recomputed on every call.

Positives (each called six times with the same path and query): ~20 ms of CPU in a ``def``
endpoint, the same behind a path parameter and a query string, a slow upstream awaited by an
``async def`` endpoint, an aggregate SQLite query (fast, but a query on every call).
Negatives: the cached twins (a TTL cache as guides 001 and 003 show, ``functools.lru_cache``
as guide 004 shows: repeats are fast and run no query), bodies that change on every call (a
counter, a timestamp), the same work behind a POST, a cheap constant GET, one route called
with other parameters each time, a GET that writes (a view counter), a 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import sqlite3
import threading
import time
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, HTTPException

from tests.corpus import Case

#: About 20 ms of CPU here (hashlib releases the GIL, so a worker thread runs it well).
ROUNDS = 80_000
TTL = 60.0
TOP_AUTHORS = (
    "SELECT author, count(*) AS books FROM book GROUP BY author ORDER BY books DESC LIMIT 3"
)


def expensive_report(seed: str) -> dict[str, Any]:
    digest = hashlib.pbkdf2_hmac("sha256", seed.encode(), b"corpus", ROUNDS)
    return {"seed": seed, "digest": digest.hex()[:16]}


@lru_cache(maxsize=128)
def priced_item(item_id: int, currency: str) -> dict[str, Any]:
    return {"id": item_id, "currency": currency, **expensive_report(f"{item_id}-{currency}")}


def build() -> FastAPI:
    # A shared in-memory database, seeded here; requests read it through a connection opened
    # lazily by the first of them and kept (query hooks see only connections opened while
    # they are installed).
    uri = f"file:fastprof-corpus-caching-{id(object())}?mode=memory&cache=shared"
    seed = sqlite3.connect(uri, uri=True, check_same_thread=False)
    seed.execute("CREATE TABLE book (id INTEGER PRIMARY KEY, author TEXT, title TEXT)")
    seed.executemany(
        "INSERT INTO book (author, title) VALUES (?, ?)",
        [(f"author {i % 7}", f"title {i}") for i in range(200)],
    )
    seed.execute("CREATE TABLE visit (path TEXT)")
    seed.commit()
    shared: dict[str, sqlite3.Connection] = {"seed": seed}  # the seed keeps the database alive
    lock = threading.Lock()
    cache: dict[str, tuple[float, Any]] = {}
    counter = itertools.count()

    def query(sql: str, *params: Any) -> list[Any]:
        with lock:
            if "conn" not in shared:
                shared["conn"] = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return shared["conn"].execute(sql, params).fetchall()

    def cached(key: str, compute: Any) -> Any:
        # guide 001's in-memory cache: a dict of (expiry, value)
        now = time.monotonic()
        with lock:
            entry = cache.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = compute()
        with lock:
            cache[key] = (now + TTL, value)
        return value

    app = FastAPI()

    @app.get("/cpu/report")
    def report() -> dict[str, Any]:  # expect: cache_opportunity
        return expensive_report("monthly")

    @app.get("/cpu/items/{item_id}")
    def item(item_id: int, currency: str = "eur") -> dict[str, Any]:  # expect: cache_opportunity
        return {"id": item_id, "currency": currency, **expensive_report(f"{item_id}-{currency}")}

    @app.get("/upstream/rates")
    async def rates() -> dict[str, Any]:  # expect: cache_opportunity
        await asyncio.sleep(0.02)  # a slow remote API
        return {"eur": 1.0, "usd": 1.08}

    @app.get("/db/top-authors")
    def top_authors() -> list[dict[str, Any]]:  # expect: cache_opportunity
        return [{"author": a, "books": n} for a, n in query(TOP_AUTHORS)]

    @app.get("/cached/report")
    def cached_report() -> dict[str, Any]:
        return cached("report", lambda: expensive_report("monthly"))

    @app.get("/cached/items/{item_id}")
    def cached_item(item_id: int, currency: str = "eur") -> dict[str, Any]:
        return priced_item(item_id, currency)

    @app.get("/cached/upstream/rates")
    async def cached_rates() -> dict[str, Any]:
        entry = cache.get("rates")
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        await asyncio.sleep(0.02)
        value = {"eur": 1.0, "usd": 1.08}
        cache["rates"] = (time.monotonic() + TTL, value)
        return value

    @app.get("/cached/db/top-authors")
    def cached_top_authors() -> list[dict[str, Any]]:
        rows = cached("top", lambda: query(TOP_AUTHORS))
        return [{"author": a, "books": n} for a, n in rows]

    @app.get("/changing/report")
    def numbered_report() -> dict[str, Any]:
        return {"n": next(counter), **expensive_report("monthly")}

    @app.get("/changing/rates")
    async def timestamped_rates() -> dict[str, Any]:
        await asyncio.sleep(0.02)
        return {"eur": 1.0, "usd": 1.08, "at": time.time_ns()}

    @app.post("/cpu/report")
    def post_report() -> dict[str, Any]:
        return expensive_report("monthly")

    @app.get("/cheap/status")
    async def status() -> dict[str, str]:
        return {"status": "ok", "version": "1.2.3"}

    @app.get("/db/counted")
    def counted() -> list[dict[str, Any]]:
        query("INSERT INTO visit (path) VALUES (?)", "/db/counted")
        return [{"author": a, "books": n} for a, n in query(TOP_AUTHORS)]

    @app.get("/cpu/missing")
    def missing() -> None:
        expensive_report("missing")
        raise HTTPException(status_code=404, detail="no such report")

    return app


CACHE = frozenset({"cache_opportunity"})
REPEAT = 6

CASES = [
    Case("/cpu/report", CACHE, repeat=REPEAT),
    Case("/cpu/items/7?currency=usd", CACHE, repeat=REPEAT),
    Case("/upstream/rates", CACHE, repeat=REPEAT),
    Case("/db/top-authors", CACHE, repeat=REPEAT),
    Case("/cached/report", repeat=REPEAT),
    Case("/cached/items/7?currency=usd", repeat=REPEAT),
    Case("/cached/upstream/rates", repeat=REPEAT),
    Case("/cached/db/top-authors", repeat=REPEAT),
    Case("/changing/report", repeat=REPEAT),
    Case("/changing/rates", repeat=REPEAT),
    Case("/cpu/report", method="POST", repeat=REPEAT),
    Case("/cheap/status", repeat=REPEAT),
    Case("/db/counted", repeat=REPEAT),
    Case("/cpu/missing", repeat=REPEAT),
    # one route, other parameters on every call
    *(Case(f"/cpu/items/{n}?currency=eur") for n in range(1, REPEAT + 1)),
]
