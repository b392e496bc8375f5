"""The aiosqlite hook: queries recorded on the awaiting side of the worker thread."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import aiosqlite.core
import pytest

from fastprof.queries.base import get_hook, leftovers
from tests.queries.test_base import in_request, line_of

THIS = str(Path(__file__))
ORIGINALS = {name: aiosqlite.core.Connection.__dict__[name] for name in ("_execute", "_connect")}


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    yield
    for name, original in ORIGINALS.items():
        assert aiosqlite.core.Connection.__dict__[name] is original, f"{name} left patched"
    assert not leftovers()


@pytest.fixture
def hook() -> Iterator[None]:
    installed = get_hook("aiosqlite")
    installed.install()
    try:
        yield
    finally:
        installed.uninstall()


def test_install_is_counted_and_restores_the_originals() -> None:
    hook = get_hook("aiosqlite")
    hook.install()
    hook.install()
    assert aiosqlite.core.Connection._execute is not ORIGINALS["_execute"]
    hook.uninstall()
    assert aiosqlite.core.Connection._execute is not ORIGINALS["_execute"]
    hook.uninstall()


@pytest.mark.usefixtures("hook")
async def test_every_statement_path_is_recorded_once() -> None:
    db = await aiosqlite.connect(":memory:")
    await db.execute("CREATE TABLE t (id INTEGER, name TEXT)")
    with in_request() as state:
        await db.execute("INSERT INTO t VALUES (?, ?)", (1, "a"))  # here: execute
        await db.executemany("INSERT INTO t VALUES (?, ?)", [(2, "b"), (3, "c")])
        rows = await db.execute_fetchall("SELECT name FROM t WHERE id = ?", (2,))
        assert list(rows) == [("b",)]
        await db.execute_insert("INSERT INTO t VALUES (?, ?)", (4, "d"))
        async with db.cursor() as cursor:
            await cursor.execute("SELECT id FROM t WHERE name = ?", ("a",))  # here: cursor
            assert await cursor.fetchall() == [(1,)]
        await db.commit()  # not a statement
    await db.close()
    sqls = [q.sql for q in state.queries]
    assert sqls == [
        "INSERT INTO t VALUES (?, ?)",
        "INSERT INTO t VALUES (?, ?)",
        "SELECT name FROM t WHERE id = ?",
        "INSERT INTO t VALUES (?, ?)",
        "SELECT id FROM t WHERE name = ?",
    ]
    assert [q.many for q in state.queries] == [False, True, False, False, False]
    assert state.queries[0].params == (1, "a")
    assert all(q.driver == "aiosqlite" for q in state.queries)
    first, cursor_query = state.queries[0], state.queries[4]
    assert first.location is not None and first.location.file == THIS
    assert first.location.line == line_of("here: execute", THIS)
    assert cursor_query.location is not None
    assert cursor_query.location.line == line_of("here: cursor", THIS)


@pytest.mark.usefixtures("hook")
async def test_queries_outside_a_request_are_not_recorded() -> None:
    async with aiosqlite.connect(":memory:") as db:
        await db.execute("SELECT 1")
        with in_request() as state:
            pass
    assert state.queries == [] and state.connects == []


@pytest.mark.usefixtures("hook")
async def test_connects_are_recorded_and_judged_by_what_outlives_the_request() -> None:
    with in_request() as state:
        async with aiosqlite.connect(":memory:") as closed:  # here: connect
            await closed.execute("SELECT 1")
        kept = await aiosqlite.connect(":memory:")
    # The worker thread's own sqlite3.connect is aiosqlite's business: one record each.
    assert [c.driver for c in state.connects] == ["aiosqlite", "aiosqlite"]
    first, second = state.connects
    assert first.how == "connect" and first.location is not None
    assert first.location.line == line_of("here: connect", THIS)
    assert not first.kept()
    assert second.kept()
    await kept.close()
    assert not second.kept()
    del kept
    gc.collect()
    assert not second.kept()


async def test_with_the_sqlite3_hook_too_each_query_is_recorded_once() -> None:
    hooks = [get_hook("sqlite3"), get_hook("aiosqlite")]
    for hook in hooks:
        hook.install()
    try:
        with in_request() as state:
            async with aiosqlite.connect(":memory:") as db:
                await db.execute("SELECT 1")
    finally:
        for hook in hooks:
            hook.uninstall()
    assert [(q.driver, q.sql) for q in state.queries] == [("aiosqlite", "SELECT 1")]
    assert [c.driver for c in state.connects] == ["aiosqlite"]


@pytest.mark.usefixtures("hook")
async def test_the_connect_record_names_the_database(tmp_path: Path) -> None:
    path = tmp_path / "named.db"
    with in_request() as state:
        async with aiosqlite.connect(path):
            pass
        async with aiosqlite.connect(":memory:"):
            pass
    assert [c.detail for c in state.connects] == [str(path), ":memory:"]
