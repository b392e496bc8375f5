"""The databases the demo talks to, opened once at startup and closed at shutdown.

SQLite (default, a temporary file seeded at startup) or PostgreSQL (``DATABASE_URL``). Each
is reached four ways, so every pitfall can be shown with the driver it happens with:

* ``engine`` / ``sessions``: SQLAlchemy async (aiosqlite or asyncpg), a pool sized up front;
* ``sync_engine`` / ``sync_sessions``: SQLAlchemy sync (sqlite3 or psycopg), the same;
* ``sqlite``: one aiosqlite connection shared by all requests (aiosqlite runs every call on
  the connection's own thread, so one connection is SQLite's pool), or
* ``pg_pool``: an asyncpg pool.

``tiny_engine`` is the pool-sizing pitfall's: SQLAlchemy async with two connections and no
overflow, smaller than the load the scan sends.

Pools are filled before the first request and never shrink (no overflow, no idle timeout), so
a fixed route never opens a connection: what a connection-per-request detector sees on a
fixed route would be a false positive.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiosqlite
import anyio.to_thread
from sqlalchemy import Engine, TextClause, create_engine, event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from demo_app.seed import PG_SCHEMA, seed, seed_customers

POOL_SIZE = 10
#: The async engine's pool, which most async routes share. A request's session is closed by
#: its dependency's teardown, a little after the response is sent; meanwhile the client's next
#: request checks out another connection, so 8 connections of load need more than 8 (10 made
#: a twin wait now and then in a scan).
ENGINE_POOL_SIZE = 16
#: The pool-sizing pitfall's pool: smaller than the scan's 8 connections of load.
TINY_POOL_SIZE = 2

Dialect = Literal["sqlite", "postgresql"]


@dataclass(eq=False)
class Database:
    dialect: Dialect
    #: SQLAlchemy URL of the async driver, and its connect arguments: what a route that builds
    #: its own engine (the pitfall) needs.
    async_url: str
    connect_args: dict[str, Any]
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    tiny_engine: AsyncEngine
    sync_engine: Engine
    sync_sessions: sessionmaker[Session]
    #: SQLite: the database file; PostgreSQL: the plain DSN asyncpg takes.
    sqlite_path: str | None = None
    dsn: str | None = None
    sqlite: aiosqlite.Connection | None = None
    pg_pool: Any = None  # asyncpg.Pool (asyncpg is imported only for PostgreSQL)
    _tempdir: str | None = field(default=None, repr=False)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def pause(self) -> TextClause:
        """A statement that takes ``:seconds`` in the database: a stand-in for a slow query.

        PostgreSQL has ``pg_sleep``; on SQLite the demo registers ``time.sleep`` as ``sleep()``
        on every connection (a C function, so no Python frame of the demo's shows up in it).
        """
        return text("SELECT pg_sleep(:seconds)" if self.is_postgres else "SELECT sleep(:seconds)")


def _register_sleep(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function("sleep", 1, time.sleep)


async def open_database(url: str | None = None) -> Database:
    """Open, seed and warm up the database at ``url`` (None: a new temporary SQLite file)."""
    if url is not None and make_url(url).get_backend_name() in ("postgresql", "postgres"):
        db = await _open_postgres(url)
    else:
        db = await _open_sqlite(url)
    try:
        await anyio.to_thread.run_sync(seed, db.sync_engine)
        await anyio.to_thread.run_sync(seed_customers, db.sync_engine)
        await _warm_up(db)
    except BaseException:
        await close_database(db)
        raise
    return db


async def _open_sqlite(url: str | None) -> Database:
    tempdir = None
    if url is None:
        tempdir = tempfile.mkdtemp(prefix="demo-app-")
        path = os.path.join(tempdir, "demo.sqlite3")
        await anyio.to_thread.run_sync(shutil.copyfile, await _sqlite_template(), path)
    else:
        path = make_url(url).database or ""
        if not path or path == ":memory:":
            raise ValueError("DATABASE_URL for SQLite must name a file (sqlite:///path/demo.db)")
    async_url = f"sqlite+aiosqlite:///{path}"
    engine = create_async_engine(async_url, pool_size=ENGINE_POOL_SIZE, max_overflow=0)
    event.listen(engine.sync_engine, "connect", _register_sleep)
    tiny_engine = create_async_engine(async_url, pool_size=TINY_POOL_SIZE, max_overflow=0)
    sync_engine = create_engine(
        f"sqlite:///{path}",
        pool_size=POOL_SIZE,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    event.listen(sync_engine, "connect", _register_sleep)
    db = Database(
        dialect="sqlite",
        async_url=async_url,
        connect_args={},
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        tiny_engine=tiny_engine,
        sync_engine=sync_engine,
        sync_sessions=sessionmaker(sync_engine, expire_on_commit=False),
        sqlite_path=path,
        _tempdir=tempdir,
    )
    return db


_template_lock = threading.Lock()
_template: str | None = None


async def _sqlite_template() -> str:
    """A seeded SQLite file, made once per process; each new demo database is a copy of it.

    Seeding takes about 1.5 s (the index pair's 600,000 customers), copying the file about
    0.1 s: the tests open the demo dozens of times.
    """
    return await anyio.to_thread.run_sync(_make_template)


def _make_template() -> str:
    global _template
    with _template_lock:
        if _template is None or not os.path.exists(_template):
            folder = tempfile.mkdtemp(prefix="demo-app-template-")
            path = os.path.join(folder, "demo.sqlite3")
            engine = create_engine(f"sqlite:///{path}")
            try:
                seed(engine)
                seed_customers(engine)
            finally:
                engine.dispose()
            atexit.register(shutil.rmtree, folder, True)
            _template = path
        return _template


async def _open_postgres(url: str) -> Database:
    try:
        import psycopg  # noqa: F401  (the sync driver of the sync-vs-async pairs)
    except ImportError:
        raise RuntimeError(
            "the demo on PostgreSQL needs psycopg for its sync-driver routes: "
            "pip install 'psycopg[binary]'"
        ) from None
    parsed = make_url(url)
    async_url = parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    connect_args: dict[str, Any] = {"server_settings": {"search_path": PG_SCHEMA}}
    engine = create_async_engine(
        async_url, pool_size=ENGINE_POOL_SIZE, max_overflow=0, connect_args=connect_args
    )
    tiny_engine = create_async_engine(
        async_url, pool_size=TINY_POOL_SIZE, max_overflow=0, connect_args=connect_args
    )
    sync_engine = create_engine(
        parsed.set(drivername="postgresql+psycopg"),
        pool_size=POOL_SIZE,
        max_overflow=0,
        connect_args={"options": f"-c search_path={PG_SCHEMA}"},
    )
    return Database(
        dialect="postgresql",
        async_url=async_url,
        connect_args=connect_args,
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        tiny_engine=tiny_engine,
        sync_engine=sync_engine,
        sync_sessions=sessionmaker(sync_engine, expire_on_commit=False),
        dsn=parsed.set(drivername="postgresql").render_as_string(hide_password=False),
    )


async def _warm_up(db: Database) -> None:
    """Fill every pool now, so that no request pays for (or is blamed for) a connect."""
    async_conns: list[AsyncConnection] = [
        await db.engine.connect() for _ in range(ENGINE_POOL_SIZE)
    ]
    async_conns += [await db.tiny_engine.connect() for _ in range(TINY_POOL_SIZE)]
    for conn in async_conns:
        await conn.close()

    def warm_sync() -> None:
        conns = [db.sync_engine.connect() for _ in range(POOL_SIZE)]
        for conn in conns:
            conn.close()

    await anyio.to_thread.run_sync(warm_sync)
    if db.is_postgres:
        import asyncpg  # type: ignore[import-untyped,unused-ignore]

        db.pg_pool = await asyncpg.create_pool(
            db.dsn,
            min_size=POOL_SIZE,
            max_size=POOL_SIZE,
            max_inactive_connection_lifetime=0,
            server_settings={"search_path": PG_SCHEMA},
        )
    else:
        assert db.sqlite_path is not None
        db.sqlite = await aiosqlite.connect(db.sqlite_path)
        db.sqlite.row_factory = aiosqlite.Row
        await db.sqlite.create_function("sleep", 1, time.sleep)


async def close_database(db: Database) -> None:
    if db.pg_pool is not None:
        await db.pg_pool.close()
    if db.sqlite is not None:
        await db.sqlite.close()
    await db.engine.dispose()
    await db.tiny_engine.dispose()
    db.sync_engine.dispose()
    if db._tempdir is not None:
        shutil.rmtree(db._tempdir, ignore_errors=True)
