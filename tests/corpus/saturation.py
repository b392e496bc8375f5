"""pool_exhaustion and slow_query on SQLite, through SQLAlchemy (sync and asyncio) and sqlite3.

pool_exhaustion positives (eight requests at once): a ``def`` route holding one of a
two-connection ``QueuePool`` for 40 ms, the ORM's ``Session`` doing the same, an ``async def``
route holding an ``AsyncAdaptedQueuePool`` connection across an ``await``. Negatives: the same
crowd on a pool with room (size 10), on a pool whose overflow gives room, connections
released before the slow part, and one request at a time on the tiny pool.

slow_query positives (a 300,000-row table, threshold 10 ms): a lookup by an unindexed column
through sqlite3 and through SQLAlchemy, a ``SELECT *`` by an unindexed column, an UPDATE by an
unindexed column. Negatives: the same lookups by an indexed column, by the primary key, a scan
of a ten-row table, and a slow lookup through ``executemany`` (one call for many rows: n/a).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

from tests.corpus import Case

ROWS = 300_000
HOLD = 0.04
OPTIONS: dict[str, Any] = {"detector_options": {"slow_query": {"threshold_ms": 10.0}}}
LAST = f"user{ROWS - 1}@example.com"
FIND_ID = "SELECT id FROM customer WHERE email = ?"
FIND_ALL = "SELECT * FROM customer WHERE email = ?"
TOUCH = "UPDATE customer SET city = city WHERE email = ?"


def _seed(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE customer (id INTEGER PRIMARY KEY, email TEXT, handle TEXT, city TEXT)"
    )
    conn.executemany(
        "INSERT INTO customer (email, handle, city) VALUES (?, ?, ?)",
        ((f"user{i}@example.com", f"h{i}", f"city{i % 50}") for i in range(ROWS)),
    )
    conn.execute("CREATE INDEX ix_customer_handle ON customer (handle)")
    conn.execute("CREATE TABLE tiny (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO tiny (name) VALUES (?)", [(f"n{i}",) for i in range(10)])
    conn.commit()
    conn.close()


def _shared(path: str, held: dict[str, sqlite3.Connection]) -> sqlite3.Connection:
    """One sqlite3 connection kept for the app (opened by the first request that needs it)."""
    if "conn" not in held:
        held["conn"] = sqlite3.connect(path, check_same_thread=False)
    return held["conn"]


def build() -> FastAPI:
    folder = tempfile.mkdtemp(prefix="fastprof-corpus-")
    path = os.path.join(folder, "saturation.db")
    _seed(path)
    url = f"sqlite:///{path}"
    tiny = create_engine(url, pool_size=2, max_overflow=0)
    roomy = create_engine(url, pool_size=10, max_overflow=0)
    overflowing = create_engine(url, pool_size=2, max_overflow=10)
    atiny = create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=2, max_overflow=0)
    engines = [tiny, roomy, overflowing]
    held: dict[str, sqlite3.Connection] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for engine in engines:
            engine.dispose()
        if "conn" in held:
            held["conn"].close()
        await atiny.dispose()

    app = FastAPI(lifespan=lifespan)

    # --- pool_exhaustion -----------------------------------------------------------------

    @app.get("/pool/sync-hold")
    def sync_hold() -> dict[str, int]:
        with tiny.connect() as conn:  # expect: pool_exhaustion
            conn.execute(text("SELECT 1"))
            time.sleep(HOLD)
        return {}

    @app.get("/pool/orm-hold")
    def orm_hold() -> dict[str, int]:
        with Session(tiny) as session:
            session.execute(text("SELECT 1"))  # expect: pool_exhaustion
            time.sleep(HOLD)
        return {}

    @app.get("/pool/async-hold")
    async def async_hold() -> dict[str, int]:
        async with atiny.connect() as conn:  # expect: pool_exhaustion
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(HOLD)
        return {}

    @app.get("/pool/roomy")
    def roomy_hold() -> dict[str, int]:
        with roomy.connect() as conn:
            conn.execute(text("SELECT 1"))
            time.sleep(HOLD)
        return {}

    @app.get("/pool/overflow")
    def overflow_hold() -> dict[str, int]:
        with overflowing.connect() as conn:
            conn.execute(text("SELECT 1"))
            time.sleep(HOLD)
        return {}

    @app.get("/pool/release-first")
    def release_first() -> dict[str, int]:
        with tiny.connect() as conn:
            conn.execute(text("SELECT 1"))
        time.sleep(HOLD)  # the slow part holds no connection
        return {}

    @app.get("/pool/one-at-a-time")
    def one_at_a_time() -> dict[str, int]:
        with tiny.connect() as conn:
            conn.execute(text("SELECT 1"))
            time.sleep(HOLD)
        return {}

    # --- slow_query --------------------------------------------------------------------------

    @app.get("/slow/sqlite3")
    def slow_sqlite3() -> dict[str, Any]:
        conn = _shared(path, held)
        cursor = conn.execute(FIND_ID, (LAST,))  # expect: slow_query
        row = cursor.fetchone()
        return {"id": row[0]}

    @app.get("/slow/sqlalchemy")
    def slow_sqlalchemy() -> dict[str, Any]:
        with roomy.connect() as conn:
            query = text("SELECT id FROM customer WHERE city = :city AND email = :email")
            found = conn.execute(query, {"city": "city49", "email": LAST})  # expect: slow_query
            row = found.one()
        return {"id": row[0]}

    @app.get("/slow/select-star")
    def slow_select_star() -> dict[str, Any]:
        conn = _shared(path, held)
        row = conn.execute(FIND_ALL, (LAST,)).fetchone()  # expect: slow_query
        return {"id": row[0]}

    @app.post("/slow/update")
    def slow_update() -> dict[str, Any]:
        conn = _shared(path, held)
        conn.execute(TOUCH, (LAST,))  # expect: slow_query
        conn.commit()
        return {}

    @app.get("/fast/indexed")
    def fast_indexed() -> dict[str, Any]:
        conn = _shared(path, held)
        row = conn.execute("SELECT id FROM customer WHERE handle = ?", (f"h{ROWS - 1}",)).fetchone()
        return {"id": row[0]}

    @app.get("/fast/primary-key")
    def fast_primary_key() -> dict[str, Any]:
        with roomy.connect() as conn:
            row = conn.execute(text("SELECT * FROM customer WHERE id = :id"), {"id": ROWS}).one()
        return {"id": row[0]}

    @app.get("/fast/tiny-scan")
    def fast_tiny_scan() -> dict[str, Any]:
        conn = _shared(path, held)
        rows = conn.execute("SELECT * FROM tiny WHERE name = ?", ("n9",)).fetchall()
        return {"n": len(rows)}

    @app.post("/fast/executemany")
    def fast_executemany() -> dict[str, Any]:
        conn = _shared(path, held)
        conn.executemany(TOUCH, [(LAST,), ("nobody",)])
        conn.commit()
        return {}

    return app


CASES = [
    Case("/pool/sync-hold", frozenset({"pool_exhaustion"}), repeat=8, concurrency=8),
    Case("/pool/orm-hold", frozenset({"pool_exhaustion"}), repeat=8, concurrency=8),
    Case("/pool/async-hold", frozenset({"pool_exhaustion"}), repeat=8, concurrency=8),
    Case("/pool/roomy", repeat=8, concurrency=8),
    Case("/pool/overflow", repeat=8, concurrency=8),
    Case("/pool/release-first", repeat=8, concurrency=8),
    Case("/pool/one-at-a-time", repeat=3),
    Case("/slow/sqlite3", frozenset({"slow_query"}), repeat=3),
    Case("/slow/sqlalchemy", frozenset({"slow_query"}), repeat=3),
    Case("/slow/select-star", frozenset({"slow_query"}), repeat=3),
    Case("/slow/update", frozenset({"slow_query"}), method="POST", repeat=3),
    Case("/fast/indexed", repeat=3),
    Case("/fast/primary-key", repeat=3),
    Case("/fast/tiny-scan", repeat=3),
    Case("/fast/executemany", method="POST"),
]
