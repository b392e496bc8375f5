"""A new database connection (or engine) per request vs the pool made at startup.

Guide 001's first asyncpg example opens a connection in a dependency on every request; its
"Connection Pooling" section (and 003's, and 004's pool sizing) replaces that with a pool
created once. The same goes for SQLAlchemy: an engine *is* a pool, so one per request pays a
connect every time.

Pool sizing: a pool smaller than the number of requests in flight makes the others queue for a
connection (``pool_exhaustion``); the twin runs the same code on a pool sized for the load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import aiosqlite
from fastapi import APIRouter, Depends
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from demo_app.resources import DatabaseDep
from demo_app.schemas import AuthorOut

router = APIRouter(tags=["pooling"])

FIRST_AUTHORS = "SELECT id, name, country, born FROM authors ORDER BY id LIMIT 10"


async def new_connection(db: DatabaseDep) -> AsyncIterator[Any]:
    """Guide 001's ``get_connection``: a fresh connection for every request."""
    if db.is_postgres:
        import asyncpg  # type: ignore[import-untyped,unused-ignore]

        conn = await asyncpg.connect(db.dsn, server_settings=db.connect_args["server_settings"])
        try:
            yield conn
        finally:
            await conn.close()
    else:
        async with aiosqlite.connect(db.sqlite_path or "") as sqlite_conn:
            sqlite_conn.row_factory = aiosqlite.Row
            yield sqlite_conn


async def pooled_connection(db: DatabaseDep) -> AsyncIterator[Any]:
    """The same, borrowed from what was opened at startup."""
    if db.pg_pool is not None:
        async with db.pg_pool.acquire() as conn:
            yield conn
    else:
        yield db.sqlite


NewConnection = Annotated[Any, Depends(new_connection)]
PooledConnection = Annotated[Any, Depends(pooled_connection)]


async def first_authors(conn: Any) -> list[AuthorOut]:
    if isinstance(conn, aiosqlite.Connection):
        async with conn.execute(FIRST_AUTHORS) as cursor:
            rows: list[Any] = list(await cursor.fetchall())
    else:
        rows = await conn.fetch(FIRST_AUTHORS)
    return [AuthorOut.model_validate(dict(row)) for row in rows]


@router.get("/pitfall/pooling/connect")
async def connect_per_request(conn: NewConnection) -> list[AuthorOut]:
    return await first_authors(conn)


@router.get("/fixed/pooling/connect")
async def connect_from_pool(conn: PooledConnection) -> list[AuthorOut]:
    return await first_authors(conn)


@router.get("/pitfall/pooling/engine")
async def engine_per_request(db: DatabaseDep) -> list[AuthorOut]:
    engine = create_async_engine(db.async_url, connect_args=db.connect_args)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(FIRST_AUTHORS))).mappings().all()
    finally:
        await engine.dispose()
    return [AuthorOut.model_validate(dict(row)) for row in rows]


@router.get("/fixed/pooling/engine")
async def engine_from_startup(db: DatabaseDep) -> list[AuthorOut]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(FIRST_AUTHORS))).mappings().all()
    return [AuthorOut.model_validate(dict(row)) for row in rows]


# --- pool sizing (guides 001 and 004: pool_size=20, max_overflow=10) --------------------------
#: Each request holds its connection this long after its query (a call to another service
#: made inside the session, the common way a connection is held longer than needed).
HOLD_SECONDS = 0.03


@router.get("/pitfall/pooling/pool-size")
async def tiny_pool(db: DatabaseDep) -> list[AuthorOut]:
    """Two connections for eight requests at a time: six of them wait for a connection."""
    async with db.tiny_engine.connect() as conn:
        rows = (await conn.execute(text(FIRST_AUTHORS))).mappings().all()
        await asyncio.sleep(HOLD_SECONDS)
    return [AuthorOut.model_validate(dict(row)) for row in rows]


@router.get("/fixed/pooling/pool-size")
async def sized_pool(db: DatabaseDep) -> list[AuthorOut]:
    """The same work on the app's pool, sized for the load (16 connections)."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(FIRST_AUTHORS))).mappings().all()
        await asyncio.sleep(HOLD_SECONDS)
    return [AuthorOut.model_validate(dict(row)) for row in rows]
