"""The sqlite3 hook: a traced Connection factory behind a patched ``sqlite3.connect``."""

from __future__ import annotations

import gc
import sqlite3
import sqlite3.dbapi2
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastprof.queries import QueryRecord
from fastprof.queries.base import get_hook, is_owned, leftovers, mark_owned, owned
from tests.queries.test_base import in_request, line_of

THIS = str(Path(__file__))
ORIGINAL_CONNECT = sqlite3.connect


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    yield
    assert sqlite3.connect is ORIGINAL_CONNECT
    assert sqlite3.dbapi2.connect is ORIGINAL_CONNECT
    assert not leftovers()


@pytest.fixture
def hook() -> Iterator[None]:
    installed = get_hook("sqlite3")
    installed.install()
    try:
        yield
    finally:
        installed.uninstall()


def test_install_patches_connect_and_the_last_uninstall_restores_it() -> None:
    hook = get_hook("sqlite3")
    hook.install()
    hook.install()
    assert sqlite3.connect is not ORIGINAL_CONNECT
    assert sqlite3.dbapi2.connect is sqlite3.connect
    hook.uninstall()
    assert sqlite3.connect is not ORIGINAL_CONNECT
    hook.uninstall()
    assert sqlite3.connect is ORIGINAL_CONNECT


def test_a_patch_made_over_ours_is_left_alone() -> None:
    hook = get_hook("sqlite3")
    hook.install()
    ours = sqlite3.connect

    def theirs(*args: object, **kwargs: object) -> object:
        return ours(*args, **kwargs)  # type: ignore[arg-type]

    sqlite3.connect = theirs  # type: ignore[assignment]
    try:
        hook.uninstall()
        assert sqlite3.connect is theirs
    finally:
        sqlite3.connect = ORIGINAL_CONNECT


@pytest.mark.usefixtures("hook")
def test_queries_in_a_request_are_recorded_with_params_and_call_site() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER, name TEXT)")  # outside a request: not recorded
    with in_request() as state:
        conn.execute("INSERT INTO t VALUES (?, ?)", (1, "a"))  # here: execute
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(2, "b"), (3, "c")])
        cursor = conn.cursor()
        cursor.execute("SELECT name FROM t WHERE id = ?", (2,))  # here: cursor
        assert cursor.fetchall() == [("b",)]
        cursor.executemany("UPDATE t SET name = ? WHERE id = ?", [("x", 1)])
        conn.executescript("UPDATE t SET name = 'y';")
    conn.close()
    queries: list[QueryRecord] = state.queries
    assert [q.sql for q in queries] == [
        "INSERT INTO t VALUES (?, ?)",
        "INSERT INTO t VALUES (?, ?)",
        "SELECT name FROM t WHERE id = ?",
        "UPDATE t SET name = ? WHERE id = ?",
        "UPDATE t SET name = 'y';",
    ]
    assert [q.many for q in queries] == [False, True, False, True, True]
    assert queries[0].params == (1, "a")
    assert queries[2].params == (2,)
    assert all(q.driver == "sqlite3" and q.duration >= 0 for q in queries)
    assert all(q.location is not None and q.location.file == THIS for q in queries)
    assert queries[0].location is not None
    assert queries[0].location.line == line_of("here: execute", THIS)
    assert queries[2].location is not None
    assert queries[2].location.line == line_of("here: cursor", THIS)


@pytest.mark.usefixtures("hook")
def test_a_failing_query_is_still_recorded() -> None:
    conn = sqlite3.connect(":memory:")
    with in_request() as state, pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT * FROM missing")
    conn.close()
    assert [q.sql for q in state.queries] == ["SELECT * FROM missing"]


@pytest.mark.usefixtures("hook")
def test_connections_a_higher_layer_owns_are_left_to_it() -> None:
    theirs = sqlite3.connect(":memory:")
    mine = sqlite3.connect(":memory:")
    mark_owned(theirs)
    assert is_owned(theirs) and not is_owned(mine)
    with in_request() as state:
        theirs.execute("SELECT 1")
        theirs.cursor().execute("SELECT 2")
        mine.execute("SELECT 3")
    theirs.close()
    mine.close()
    assert [q.sql for q in state.queries] == ["SELECT 3"]
    key = id(theirs)
    del theirs
    gc.collect()
    assert key not in owned


def test_connections_outlive_the_hook_without_recording() -> None:
    hook = get_hook("sqlite3")
    hook.install()
    conn = sqlite3.connect(":memory:")
    hook.uninstall()
    with in_request() as state:
        conn.execute("SELECT 1").fetchall()
    conn.close()
    assert state.queries == []


@pytest.mark.usefixtures("hook")
def test_the_callers_factory_is_kept() -> None:
    class Mine(sqlite3.Connection):
        marker = "mine"

    by_keyword = sqlite3.connect(":memory:", factory=Mine)
    positional = sqlite3.connect(":memory:", 5.0, 0, "DEFERRED", True, Mine)
    try:
        for conn in (by_keyword, positional):
            assert isinstance(conn, Mine) and conn.marker == "mine"
            with in_request() as state:
                conn.execute("SELECT 1")
            assert len(state.queries) == 1
    finally:
        by_keyword.close()
        positional.close()


@pytest.mark.usefixtures("hook")
def test_connect_in_a_request_is_recorded_and_judged_by_what_outlives_it() -> None:
    with in_request() as state:
        closed = sqlite3.connect(":memory:")  # here: connect
        closed.close()
        kept = sqlite3.connect(":memory:")
        dropped = sqlite3.connect(":memory:")
        del dropped
        gc.collect()
    assert [c.how for c in state.connects] == ["connect", "connect", "connect"]
    first, second, third = state.connects
    assert first.driver == "sqlite3" and first.location is not None
    assert first.location.line == line_of("here: connect", THIS)
    assert not first.kept()
    assert second.kept()
    assert not third.kept()
    kept.close()
    assert not second.kept()


@pytest.mark.usefixtures("hook")
def test_connect_outside_a_request_is_not_recorded_but_traced() -> None:
    conn = sqlite3.connect(":memory:")
    with in_request() as state:
        conn.execute("SELECT 1")
    conn.close()
    assert state.connects == [] and len(state.queries) == 1


@pytest.mark.usefixtures("hook")
def test_a_failing_hook_never_fails_the_query(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastprof.queries.sqlite3 as sqlite3_hook

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("hook bug")

    monkeypatch.setattr(sqlite3_hook, "append_query", broken)
    conn = sqlite3.connect(":memory:")
    with in_request() as state:
        assert conn.execute("SELECT 42").fetchone() == (42,)
    conn.close()
    assert state.queries == []
