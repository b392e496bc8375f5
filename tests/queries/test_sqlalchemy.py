"""The SQLAlchemy hook: class-wide engine, pool and session events; ORM lazy-load context."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, String, create_engine, event, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncAttrs, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)
from sqlalchemy.pool import NullPool, Pool, StaticPool

from fastprof import FastprofMiddleware
from fastprof.queries import QueryRecord
from fastprof.queries import sqlalchemy as sa_hook
from fastprof.queries.base import get_hook, is_owned, leftovers
from tests.conftest import require_service
from tests.queries.test_base import in_request, line_of

THIS = str(Path(__file__))
ENGINE_INIT = Engine.__init__
EVENTS = [
    (Engine, "before_cursor_execute", sa_hook._before_cursor_execute),
    (Engine, "after_cursor_execute", sa_hook._after_cursor_execute),
    (Engine, "handle_error", sa_hook._handle_error),
    (Engine, "do_connect", sa_hook._do_connect),
    (Pool, "connect", sa_hook._pool_connect),
    (Pool, "checkout", sa_hook._checkout),
]


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "hook_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))
    books: Mapped[list[Book]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "hook_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("hook_author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    yield
    assert Engine.__init__ is ENGINE_INIT
    left = [name for target, name, fn in EVENTS if event.contains(target, name, fn)]
    assert not left, f"SQLAlchemy listeners left: {left}"
    assert not leftovers()


@pytest.fixture
def hook() -> Iterator[None]:
    installed = get_hook("sqlalchemy")
    installed.install()
    try:
        yield
    finally:
        installed.uninstall()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = create_engine(f"sqlite:///{tmp_path / 'hook.db'}")
    Base.metadata.create_all(made)
    with Session(made) as session:
        session.add_all([Author(id=i, name=f"a{i}", books=[Book(), Book()]) for i in range(1, 4)])
        session.commit()
    yield made
    made.dispose()


def test_install_listens_class_wide_and_uninstall_removes_everything(engine: Engine) -> None:
    hook = get_hook("sqlalchemy")
    hook.install()
    hook.install()
    assert all(event.contains(target, name, fn) for target, name, fn in EVENTS)
    assert Engine.__init__ is not ENGINE_INIT
    hook.uninstall()
    assert all(event.contains(target, name, fn) for target, name, fn in EVENTS)
    hook.uninstall()
    # An engine made while installed records nothing once the hook is gone.
    with in_request() as state, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert state.queries == []


@pytest.mark.usefixtures("hook")
def test_statements_are_recorded_with_params_and_call_site(engine: Engine) -> None:
    with in_request() as state, engine.connect() as conn:
        conn.execute(text("SELECT name FROM hook_author WHERE id = :id"), {"id": 2})  # here: q
        conn.execute(insert(Author.__table__), [{"id": 10, "name": "x"}, {"id": 11, "name": "y"}])
        conn.rollback()
    first, many = state.queries
    assert first.sql == "SELECT name FROM hook_author WHERE id = ?"
    assert first.params == (2,) and first.driver == "sqlalchemy" and not first.many
    assert first.location is not None and first.location.file == THIS
    assert first.location.line == line_of("here: q", THIS)
    assert many.many and many.sql.startswith("INSERT INTO hook_author")


def test_with_the_driver_hook_too_each_statement_is_recorded_once(engine: Engine) -> None:
    hooks = [get_hook("sqlite3"), get_hook("sqlalchemy")]
    for hook in hooks:
        hook.install()
    try:
        fresh = create_engine(str(engine.url))  # its connections come from the traced factory
        with in_request() as state, fresh.connect() as conn:
            conn.execute(text("SELECT count(*) FROM hook_book")).scalar_one()
        fresh.dispose()
    finally:
        for hook in reversed(hooks):
            hook.uninstall()
    assert [(q.driver, q.sql) for q in state.queries] == [
        ("sqlalchemy", "SELECT count(*) FROM hook_book")
    ]
    # The pool's connect is SQLAlchemy's record, not sqlite3's; the dialect's first-connect
    # PRAGMAs are not recorded at all.
    assert [(c.driver, c.how) for c in state.connects] == [("sqlalchemy", "pool_connect")]


@pytest.mark.usefixtures("hook")
def test_a_failed_statement_is_recorded_too(engine: Engine) -> None:
    with (
        in_request() as state,
        engine.connect() as conn,
        pytest.raises(Exception, match="no such table"),
    ):
        conn.execute(text("SELECT * FROM missing"))  # here: failed
    (failed,) = state.queries
    assert failed.sql == "SELECT * FROM missing" and failed.driver == "sqlalchemy"
    assert failed.location is not None and failed.location.line == line_of("here: failed", THIS)


def test_driver_connections_of_pools_are_marked_owned(tmp_path: Path) -> None:
    driver_hook = get_hook("sqlite3")
    driver_hook.install()
    engine = create_engine(f"sqlite:///{tmp_path / 'owned.db'}")
    with engine.connect() as before:  # opened before the hook: marked at its next checkout
        raw = before.connection.driver_connection
    hook = get_hook("sqlalchemy")
    hook.install()
    try:
        assert not is_owned(raw)
        with engine.connect() as again:
            assert again.connection.driver_connection is raw
        assert is_owned(raw)
        fresh = create_engine("sqlite://")
        with fresh.connect() as conn:
            assert is_owned(conn.connection.driver_connection)
        fresh.dispose()
    finally:
        hook.uninstall()
        driver_hook.uninstall()
    assert not is_owned(raw)  # with SQLAlchemy's hook gone, the driver hooks record them
    engine.dispose()


@pytest.mark.usefixtures("hook")
def test_lazy_loads_carry_their_relationship(engine: Engine) -> None:
    with in_request() as state, Session(engine) as session:
        for author in session.scalars(select(Author)).all():
            len(author.books)  # here: lazy
        session.expunge_all()
        for book in session.scalars(select(Book).where(Book.id < 3)).all():
            assert book.author is not None
        session.expunge_all()
        session.scalars(select(Author).options(selectinload(Author.books))).all()
    lazy = [q for q in state.queries if q.orm_value("lazy_load") == "Author.books"]
    assert len(lazy) == 3
    assert lazy[0].orm_value("direction") == "ONETOMANY"
    assert lazy[0].orm_value("parent") == "Author"
    assert lazy[0].location is not None and lazy[0].location.line == line_of("here: lazy", THIS)
    to_one = [q for q in state.queries if q.orm_value("lazy_load") == "Book.author"]
    assert to_one and to_one[0].orm_value("direction") == "MANYTOONE"
    # The selectinload query is one per statement: no lazy-load context on it.
    (eager,) = [q for q in state.queries if "IN (" in q.sql]
    assert eager.orm == ()


@pytest.mark.usefixtures("hook")
def test_pool_connects_say_whether_the_pool_keeps_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pools.db'}"
    nullpool = create_engine(url, poolclass=NullPool)
    queued = create_engine(url)
    with in_request() as state:
        for _ in range(2):
            with nullpool.connect() as conn:  # here: nullpool
                conn.execute(text("SELECT 1"))
            with queued.connect() as conn:
                conn.execute(text("SELECT 1"))
    nullpool.dispose()
    queued.dispose()
    connects = [(c.how, c.pooled, c.detail.split(" ")[0]) for c in state.connects]
    assert connects == [
        ("pool_connect", False, "NullPool"),
        ("pool_connect", True, "QueuePool"),
        ("pool_connect", False, "NullPool"),
    ]
    assert state.connects[0].location is not None
    assert state.connects[0].location.line == line_of("here: nullpool", THIS)
    assert all(c.duration > 0 for c in state.connects)


@pytest.mark.usefixtures("hook")
def test_an_engine_built_in_the_request_owns_its_connections() -> None:
    with in_request() as state:
        local = create_engine("sqlite://", poolclass=StaticPool)  # here: engine
        with local.connect() as conn:
            conn.execute(text("SELECT 1"))
        local.dispose()
    engine_record, connect_record = state.connects
    assert engine_record.how == "engine" and engine_record.connections == 0
    assert engine_record.detail == "StaticPool (sqlite+pysqlite)"
    assert connect_record.how == "engine_connect"
    assert engine_record.location is not None
    assert engine_record.location.line == line_of("here: engine", THIS)
    assert connect_record.location == engine_record.location


@pytest.mark.usefixtures("hook")
async def test_the_asyncio_layer_is_recorded_once_at_the_awaiting_line(tmp_path: Path) -> None:
    aiosqlite_hook = get_hook("aiosqlite")
    aiosqlite_hook.install()
    try:
        local = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
        async with local.connect() as conn:
            await conn.execute(text("CREATE TABLE t (id int)"))
            with in_request() as state:
                await conn.execute(text("SELECT count(*) FROM t"))  # here: await
        await local.dispose()
    finally:
        aiosqlite_hook.uninstall()
    assert [(q.driver, q.sql) for q in state.queries] == [("sqlalchemy", "SELECT count(*) FROM t")]
    location = state.queries[0].location
    assert location is not None and location.file == THIS
    assert location.line == line_of("here: await", THIS)


@pytest.mark.usefixtures("hook")
async def test_sqlalchemy_on_asyncpg_is_recorded_once() -> None:
    require_service("postgres", "127.0.0.1", 5432)
    asyncpg_hook = get_hook("asyncpg")
    asyncpg_hook.install()
    try:
        with in_request() as state:
            local = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
            async with local.connect() as conn:
                await conn.execute(text("SELECT 1 + 1"))  # here: pg
            await local.dispose()
    finally:
        asyncpg_hook.uninstall()
    mine = [q for q in state.queries if q.sql == "SELECT 1 + 1"]
    assert [q.driver for q in mine] == ["sqlalchemy"]
    assert all(q.driver == "sqlalchemy" for q in state.queries)
    assert mine[0].location is not None and mine[0].location.line == line_of("here: pg", THIS)
    assert [c.how for c in state.connects] == ["engine", "engine_connect"]
    assert [c.driver for c in state.connects] == ["sqlalchemy", "sqlalchemy"]


class BookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int


class AuthorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    books: list[BookOut]


async def test_lazy_loads_during_serialisation_point_at_the_parent_query(engine: Engine) -> None:
    app = FastAPI()
    seen: list[QueryRecord] = []

    @app.get("/authors", response_model=list[AuthorOut])
    def authors() -> Any:
        session = Session(engine)
        app.state.session = session
        return session.scalars(select(Author)).all()  # here: parents

    mw = FastprofMiddleware(app, detect=["n_plus_one"], on_request=None)
    original = mw.detectors[0].finish

    def keep(state: Any) -> Any:
        seen.extend(state.queries)
        return original(state)

    mw.detectors[0].finish = keep  # type: ignore[method-assign]
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            response = await client.get("/authors")
    finally:
        mw.close()
        app.state.session.close()
    assert response.status_code == 200 and len(response.json()) == 3
    lazy = [q for q in seen if q.orm_value("lazy_load") == "Author.books"]
    assert len(lazy) == 3
    assert all(q.orm_value("during") == "serialization" for q in lazy)
    assert all(q.location is not None for q in lazy)
    assert lazy[0].location is not None
    assert lazy[0].location.line == line_of("here: parents", THIS)


@pytest.mark.usefixtures("hook")
def test_orm_statements_that_are_not_selects_pass_through(engine: Engine) -> None:
    with in_request() as state, Session(engine) as session:
        session.execute(text("SELECT count(*) FROM hook_book")).scalar_one()
        session.execute(insert(Author), [{"id": 50, "name": "new"}])
        session.rollback()
    assert [q.orm for q in state.queries] == [(), ()]


@pytest.mark.usefixtures("hook")
def test_a_failing_hook_never_fails_the_query(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("hook bug")

    monkeypatch.setattr(sa_hook, "append_query", broken)
    with in_request() as state, engine.connect() as conn:
        assert conn.execute(text("SELECT 41 + 1")).scalar_one() == 42
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert state.queries == []
    failures = [r for r in caplog.records if "query capture failed" in r.getMessage()]
    assert len(failures) <= 1  # logged once per place, not per query
