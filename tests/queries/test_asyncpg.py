"""The asyncpg hook, against the real PostgreSQL: every public path, connects, pools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import asyncpg.connect_utils
import asyncpg.connection
import asyncpg.pool
import asyncpg.prepared_stmt
import pytest

from fastprof.queries.base import get_hook, leftovers
from tests.conftest import require_service
from tests.queries.test_base import in_request, line_of

THIS = str(Path(__file__))
DSN = "postgresql://postgres@127.0.0.1:5432/test"
PATCHED: list[tuple[Any, str]] = [
    *(
        (asyncpg.connection.Connection, name)
        for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany")
    ),
    *(
        (asyncpg.prepared_stmt.PreparedStatement, name)
        for name in ("fetch", "fetchrow", "fetchval", "fetchmany", "executemany")
    ),
    (asyncpg.connect_utils, "_connect"),
    (asyncpg.pool.Pool, "_async__init__"),
]
ORIGINALS = {(owner, name): getattr(owner, name) for owner, name in PATCHED}


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    yield
    left = [
        name
        for (owner, name), original in ORIGINALS.items()
        if getattr(owner, name) is not original
    ]
    assert not left, f"asyncpg left patched: {left}"
    assert not leftovers()


@pytest.fixture
def hook() -> Iterator[None]:
    require_service("postgres", "127.0.0.1", 5432)
    installed = get_hook("asyncpg")
    installed.install()
    try:
        yield
    finally:
        installed.uninstall()


def test_install_patches_everything_and_uninstall_restores_it() -> None:
    hook = get_hook("asyncpg")
    hook.install()
    try:
        still = [
            name
            for (owner, name), original in ORIGINALS.items()
            if getattr(owner, name) is original
        ]
        assert not still, f"not patched: {still}"
    finally:
        hook.uninstall()


@pytest.mark.usefixtures("hook")
async def test_every_public_query_path_is_recorded_once() -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute("CREATE TEMP TABLE t (id int, name text)")
        with in_request() as state:
            await conn.execute("INSERT INTO t VALUES ($1, $2)", 1, "a")  # here: execute
            await conn.executemany("INSERT INTO t VALUES ($1, $2)", [(2, "b"), (3, "c")])
            await conn.fetch("SELECT name FROM t WHERE id = $1", 1)
            await conn.fetchrow("SELECT name FROM t WHERE id = $1", 2)
            await conn.fetchval("SELECT count(*) FROM t")
            await conn.fetchmany("SELECT $1::int", [(1,), (2,)])
            statement = await conn.prepare("SELECT name FROM t WHERE id = $1")
            await statement.fetch(3)  # here: prepared
            await statement.fetchrow(1)
            await statement.fetchval(2)
            await conn.execute("DELETE FROM t WHERE id = 3")
    finally:
        await conn.close()
    assert [q.sql for q in state.queries] == [
        "INSERT INTO t VALUES ($1, $2)",
        "INSERT INTO t VALUES ($1, $2)",
        "SELECT name FROM t WHERE id = $1",
        "SELECT name FROM t WHERE id = $1",
        "SELECT count(*) FROM t",
        "SELECT $1::int",
        "SELECT name FROM t WHERE id = $1",
        "SELECT name FROM t WHERE id = $1",
        "SELECT name FROM t WHERE id = $1",
        "DELETE FROM t WHERE id = 3",
    ]
    assert [q.many for q in state.queries] == [
        False,
        True,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]
    assert state.queries[0].params == (1, "a")
    assert state.queries[1].params == [(2, "b"), (3, "c")]
    assert state.queries[6].params == (3,)
    assert all(q.driver == "asyncpg" and q.duration > 0 for q in state.queries)
    first, prepared = state.queries[0], state.queries[6]
    assert first.location is not None and first.location.file == THIS
    assert first.location.line == line_of("here: execute", THIS)
    assert prepared.location is not None
    assert prepared.location.line == line_of("here: prepared", THIS)
    assert state.connects == []  # connected before the request


@pytest.mark.usefixtures("hook")
async def test_asyncpgs_own_statements_are_left_out() -> None:
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=1)
    try:
        with in_request() as state:
            async with pool.acquire() as conn, conn.transaction():
                await conn.fetchval("SELECT 1")  # here: pooled
            await pool.fetchval("SELECT 2")  # the pool's shortcut: the user's call
    finally:
        await pool.close()
    # No BEGIN/COMMIT from the transaction, no reset query from the releases.
    assert [q.sql for q in state.queries] == ["SELECT 1", "SELECT 2"]
    assert state.queries[0].location is not None
    assert state.queries[0].location.line == line_of("here: pooled", THIS)
    assert state.connects == []


@pytest.mark.usefixtures("hook")
async def test_connects_pools_and_pool_connects_are_told_apart() -> None:
    with in_request() as state:
        conn = await asyncpg.connect(DSN)  # here: connect
        await conn.close()
        kept = await asyncpg.connect(DSN)
        async with asyncpg.create_pool(DSN, min_size=2, max_size=3) as pool:  # here: pool
            held = [await pool.acquire() for _ in range(3)]  # the third one connects
            for conn in held:
                await pool.release(conn)
    hows = [c.how for c in state.connects]
    assert hows == ["connect", "connect", "pool", "pool_connect"]
    closed, still, created, grown = state.connects
    assert closed.location is not None and closed.location.line == line_of("here: connect", THIS)
    assert not closed.kept()
    assert still.kept()
    assert created.connections == 2 and created.location is not None
    assert created.location.line == line_of("here: pool", THIS)
    assert not created.kept()  # closed by the async with
    assert grown.pooled
    await kept.close()
    assert not still.kept()


@pytest.mark.usefixtures("hook")
async def test_nothing_is_recorded_outside_a_request() -> None:
    conn = await asyncpg.connect(DSN)
    try:
        await conn.fetchval("SELECT 1")
        with in_request() as state:
            pass
    finally:
        await conn.close()
    assert state.queries == [] and state.connects == []
