"""pool_exhaustion and slow_query on PostgreSQL, through asyncpg and SQLAlchemy's asyncpg dialect.

pool_exhaustion positives (eight requests at once): an asyncpg pool of two connections held
across ``pg_sleep(0.04)``, an ``AsyncSession`` on a two-connection pool doing the same.
Negatives: the same crowd on an asyncpg pool with room, and one request at a time.

slow_query positives (a 300,000-row table, threshold 10 ms, ``fetch`` of every match so the
whole table is read): a lookup by an unindexed column through asyncpg (inside a transaction,
which must survive the EXPLAIN's savepoint) and through SQLAlchemy, a ``SELECT *`` by an
unindexed column. Negatives: the lookup by an indexed column, by the primary key.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from tests.corpus import Case

SERVICE = ("postgres", "127.0.0.1", 5432)
DSN = "postgresql://postgres@127.0.0.1:5432/test"
SA_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
ROWS = 300_000
OPTIONS: dict[str, Any] = {"detector_options": {"slow_query": {"threshold_ms": 10.0}}}


def build() -> FastAPI:
    table = f"fpq_customer_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    by_email = f"SELECT id FROM {table} WHERE email = $1"
    star_by_city = f"SELECT * FROM {table} WHERE city = $1"
    by_handle = f"SELECT id FROM {table} WHERE handle = $1"
    by_id = f"SELECT * FROM {table} WHERE id = $1"
    held: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(
                f"CREATE TABLE {table} (id serial PRIMARY KEY, email text, handle text, "
                "city text)"
            )
            await conn.execute(
                f"INSERT INTO {table} (email, handle, city) SELECT 'user' || g || "
                f"'@example.com', 'h' || g, 'city' || (g % 1000) "
                f"FROM generate_series(1, {ROWS}) AS g"
            )
            await conn.execute(f"CREATE INDEX ON {table} (handle)")
            await conn.execute(f"ANALYZE {table}")
        finally:
            await conn.close()
        held["tiny"] = await asyncpg.create_pool(DSN, min_size=2, max_size=2)
        held["roomy"] = await asyncpg.create_pool(DSN, min_size=2, max_size=10)
        held["engine"] = create_async_engine(SA_URL, pool_size=2, max_overflow=0)
        try:
            yield
        finally:
            await held["tiny"].close()
            await held["roomy"].close()
            await held["engine"].dispose()
            conn = await asyncpg.connect(DSN)
            try:
                await conn.execute(f"DROP TABLE IF EXISTS {table}")
            finally:
                await conn.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/pg/pool-hold")
    async def pool_hold() -> dict[str, int]:
        async with held["tiny"].acquire() as conn:  # expect: pool_exhaustion
            await conn.execute("SELECT pg_sleep(0.04)")
        return {}

    @app.get("/pg/session-hold")
    async def session_hold() -> dict[str, int]:
        async with AsyncSession(held["engine"]) as session:
            await session.execute(text("SELECT pg_sleep(0.04)"))  # expect: pool_exhaustion
        return {}

    @app.get("/pg/pool-roomy")
    async def pool_roomy() -> dict[str, int]:
        async with held["roomy"].acquire() as conn:
            await conn.execute("SELECT 1")
        return {}

    @app.get("/pg/pool-alone")
    async def pool_alone() -> dict[str, int]:
        async with held["tiny"].acquire() as conn:
            await conn.execute("SELECT 1")
        return {}

    @app.get("/pg/slow-email")
    async def slow_email() -> dict[str, Any]:
        async with held["roomy"].acquire() as conn, conn.transaction():
            rows = await conn.fetch(by_email, "nobody@example.com")  # expect: slow_query
            after = await conn.fetchval("SELECT 1")  # the transaction still works
        return {"n": len(rows), "after": after}

    @app.get("/pg/slow-orm")
    async def slow_orm() -> dict[str, Any]:
        async with AsyncSession(held["engine"]) as session:
            query = text(f"SELECT id FROM {table} WHERE email = :email")
            result = await session.execute(query, {"email": "nobody"})  # expect: slow_query
            return {"n": len(result.all())}

    @app.get("/pg/slow-star")
    async def slow_star() -> dict[str, Any]:
        async with held["roomy"].acquire() as conn:
            rows = await conn.fetch(star_by_city, "city7")  # expect: slow_query
        return {"n": len(rows)}

    @app.get("/pg/fast-indexed")
    async def fast_indexed() -> dict[str, Any]:
        async with held["roomy"].acquire() as conn:
            rows = await conn.fetch(by_handle, "h77")
        return {"n": len(rows)}

    @app.get("/pg/fast-primary-key")
    async def fast_primary_key() -> dict[str, Any]:
        async with held["roomy"].acquire() as conn:
            rows = await conn.fetch(by_id, 77)
        return {"n": len(rows)}

    return app


CASES = [
    # pg_sleep(0.04) is also a slow query, for real: not what these cases score
    Case(
        "/pg/pool-hold",
        frozenset({"pool_exhaustion"}),
        repeat=8,
        concurrency=8,
        ignore=frozenset({"slow_query"}),
    ),
    Case(
        "/pg/session-hold",
        frozenset({"pool_exhaustion"}),
        repeat=8,
        concurrency=8,
        ignore=frozenset({"slow_query"}),
    ),
    Case("/pg/pool-roomy", repeat=8, concurrency=8),
    Case("/pg/pool-alone", repeat=3),
    Case("/pg/slow-email", frozenset({"slow_query"}), repeat=3),
    Case("/pg/slow-orm", frozenset({"slow_query"}), repeat=3),
    Case("/pg/slow-star", frozenset({"slow_query"}), repeat=3),
    Case("/pg/fast-indexed", repeat=3),
    Case("/pg/fast-primary-key", repeat=3),
]
