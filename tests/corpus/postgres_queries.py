"""PostgreSQL through asyncpg, directly and under SQLAlchemy's asyncio ORM (asyncpg dialect).

Tables get a per-build suffix so that parallel runs do not collide; the lifespan creates
them, fills them and drops them. Positives: query loops on a pooled connection, on the pool's
own shortcuts and on a prepared statement, an INSERT loop, identical queries, a connection or
a pool created per request, ``awaitable_attrs`` lazy loads, a ``NullPool`` engine, an engine
per request. Negatives: ``= ANY($1)``, a JOIN, ``executemany``, three pages, a transaction,
two unrelated queries, pool checkouts, eager loaders.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI
from sqlalchemy import ForeignKey, String, insert, select, text
from sqlalchemy.ext.asyncio import AsyncAttrs, async_sessionmaker, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)
from sqlalchemy.pool import NullPool

from tests.corpus import Case

SERVICE = ("postgres", "127.0.0.1", 5432)
DSN = "postgresql://postgres@127.0.0.1:5432/test"
SA_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
AUTHORS = 8
BOOKS_PER_AUTHOR = 3


def build() -> FastAPI:
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    authors, books, events = f"fpq_author_{suffix}", f"fpq_book_{suffix}", f"fpq_event_{suffix}"
    author_sql = f"SELECT id, name FROM {authors} WHERE id = $1"
    books_of = f"SELECT id, title FROM {books} WHERE author_id = $1"
    insert_event = f"INSERT INTO {events} (name) VALUES ($1)"

    class Base(AsyncAttrs, DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = authors
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(40))
        books: Mapped[list[Book]] = relationship(back_populates="author")

    class Book(Base):
        __tablename__ = books
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(80))
        author_id: Mapped[int] = mapped_column(ForeignKey(f"{authors}.id"))
        author: Mapped[Author] = relationship(back_populates="books")

    class Event(Base):
        __tablename__ = events
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(40))

    engine = create_async_engine(SA_URL)
    nullpool_engine = create_async_engine(SA_URL, poolclass=NullPool)
    make_session = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(DSN, min_size=2, max_size=5)
        async with pool.acquire() as conn:
            await conn.execute(
                f"""
                CREATE TABLE {authors} (id int PRIMARY KEY, name varchar(40) NOT NULL);
                CREATE TABLE {books} (id serial PRIMARY KEY, title varchar(80),
                                      author_id int REFERENCES {authors}(id));
                CREATE TABLE {events} (id serial PRIMARY KEY, name varchar(40));
                """
            )
            await conn.executemany(
                f"INSERT INTO {authors} (id, name) VALUES ($1, $2)",
                [(a, f"author {a}") for a in range(1, AUTHORS + 1)],
            )
            await conn.executemany(
                f"INSERT INTO {books} (title, author_id) VALUES ($1, $2)",
                [(f"book {a}.{b}", a) for a in range(1, AUTHORS + 1) for b in range(3)],
            )
        app.state.pool = pool
        try:
            yield
        finally:
            await engine.dispose()
            await nullpool_engine.dispose()
            async with pool.acquire() as conn:
                await conn.execute(f"DROP TABLE IF EXISTS {events}, {books}, {authors}")
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    # --- asyncpg --------------------------------------------------------------------------

    @app.get("/pg/loop")
    async def pg_loop() -> dict[str, int]:
        found = 0
        async with app.state.pool.acquire() as conn:
            for author_id in range(1, AUTHORS + 1):
                found += len(await conn.fetch(books_of, author_id))  # expect: n_plus_one
        return {"books": found}

    @app.get("/pg/pool-shortcut-loop")
    async def pg_pool_shortcut_loop() -> dict[str, int]:
        names = []
        for author_id in range(1, AUTHORS + 1):
            row = await app.state.pool.fetchrow(author_sql, author_id)  # expect: n_plus_one
            names.append(row["name"])
        return {"authors": len(names)}

    @app.get("/pg/prepared-loop")
    async def pg_prepared_loop() -> dict[str, int]:
        found = 0
        async with app.state.pool.acquire() as conn:
            statement = await conn.prepare(books_of)
            for author_id in range(1, AUTHORS + 1):
                found += len(await statement.fetch(author_id))  # expect: n_plus_one
        return {"books": found}

    @app.get("/pg/any")
    async def pg_any() -> dict[str, int]:
        query = f"SELECT id, title FROM {books} WHERE author_id = ANY($1::int[])"
        rows = await app.state.pool.fetch(query, list(range(1, AUTHORS + 1)))
        return {"books": len(rows)}

    @app.get("/pg/join")
    async def pg_join() -> dict[str, int]:
        query = f"SELECT a.name, b.title FROM {authors} a JOIN {books} b ON b.author_id = a.id"
        return {"rows": len(await app.state.pool.fetch(query))}

    @app.post("/pg/executemany")
    async def pg_executemany() -> dict[str, int]:
        async with app.state.pool.acquire() as conn:
            await conn.executemany(insert_event, [(f"e{i}",) for i in range(20)])
        return {"inserted": 20}

    @app.post("/pg/insert-loop")
    async def pg_insert_loop() -> dict[str, int]:
        async with app.state.pool.acquire() as conn:
            for i in range(10):
                await conn.execute(insert_event, f"looped {i}")  # expect: n_plus_one
        return {"inserted": 10}

    @app.get("/pg/paginate")
    async def pg_paginate() -> dict[str, int]:
        seen = 0
        query = f"SELECT id, title FROM {books} ORDER BY id LIMIT $1 OFFSET $2"
        async with app.state.pool.acquire() as conn:
            for page in range(3):
                seen += len(await conn.fetch(query, 5, page * 5))
        return {"seen": seen}

    @app.get("/pg/two-queries")
    async def pg_two_queries() -> dict[str, int]:
        async with app.state.pool.acquire() as conn:
            count = await conn.fetchval(f"SELECT count(*) FROM {authors}")
            rows = await conn.fetch(books_of, 1)
        return {"authors": count, "books": len(rows)}

    @app.post("/pg/transaction")
    async def pg_transaction() -> dict[str, int]:
        async with app.state.pool.acquire() as conn, conn.transaction():
            await conn.execute(insert_event, "in a transaction")
            count = await conn.fetchval(f"SELECT count(*) FROM {events}")
        return {"events": count}

    @app.get("/pg/acquire-twice")
    async def pg_acquire_twice() -> dict[str, int]:
        async with app.state.pool.acquire() as conn:
            first = await conn.fetchval(f"SELECT count(*) FROM {authors}")
        async with app.state.pool.acquire() as conn:
            second = await conn.fetchval(f"SELECT count(*) FROM {books}")
        return {"authors": first, "books": second}

    @app.get("/pg/duplicate")
    async def pg_duplicate() -> dict[str, int]:
        async with app.state.pool.acquire() as conn:
            first = await conn.fetchrow(author_sql, 4)
            again = await conn.fetchrow(author_sql, 4)  # expect: duplicate_query
        return {"same": int(first == again)}

    @app.get("/pg/connect-per-request")
    async def pg_connect_per_request() -> dict[str, int]:
        conn = await asyncpg.connect(DSN)  # expect: connection_per_request
        try:
            count = await conn.fetchval(f"SELECT count(*) FROM {authors}")
        finally:
            await conn.close()
        return {"authors": count}

    @app.get("/pg/pool-per-request")
    async def pg_pool_per_request() -> dict[str, int]:
        async with asyncpg.create_pool(DSN, min_size=1) as pool:  # expect: connection_per_request
            count = await pool.fetchval(f"SELECT count(*) FROM {books}")
        return {"books": count}

    @app.get("/pg/pooled")
    async def pg_pooled() -> dict[str, int]:
        async with app.state.pool.acquire() as conn:
            count = await conn.fetchval(f"SELECT count(*) FROM {books}")
        return {"books": count}

    # --- SQLAlchemy asyncio on asyncpg ----------------------------------------------------

    @app.get("/pg-sa/lazy-loop")
    async def pg_sa_lazy_loop() -> dict[str, int]:
        total = 0
        async with make_session() as session:
            for author in (await session.scalars(select(Author))).all():
                total += len(await author.awaitable_attrs.books)  # expect: n_plus_one
        return {"books": total}

    @app.get("/pg-sa/selectinload")
    async def pg_sa_selectinload() -> dict[str, int]:
        async with make_session() as session:
            query = select(Author).options(selectinload(Author.books))
            found = (await session.scalars(query)).all()
        return {"books": sum(len(a.books) for a in found)}

    @app.get("/pg-sa/joinedload")
    async def pg_sa_joinedload() -> dict[str, int]:
        async with make_session() as session:
            query = select(Book).options(joinedload(Book.author))
            found = (await session.scalars(query)).all()
        return {"authors": len({b.author.name for b in found})}

    @app.get("/pg-sa/duplicate")
    async def pg_sa_duplicate() -> dict[str, int]:
        async with make_session() as session:
            query = select(Book).where(Book.author_id == 5)
            first = (await session.scalars(query)).all()
            again = (await session.scalars(query)).all()  # expect: duplicate_query
        return {"books": len(first) + len(again)}

    @app.post("/pg-sa/executemany")
    async def pg_sa_executemany() -> dict[str, int]:
        async with make_session() as session:
            await session.execute(insert(Event), [{"name": f"sa {i}"} for i in range(20)])
            await session.commit()
        return {"inserted": 20}

    @app.get("/pg-sa/nullpool")
    async def pg_sa_nullpool() -> dict[str, Any]:
        async with nullpool_engine.connect() as conn:  # expect: connection_per_request
            count = (await conn.execute(text(f"SELECT count(*) FROM {books}"))).scalar_one()
        return {"books": count}

    @app.get("/pg-sa/pooled")
    async def pg_sa_pooled() -> dict[str, Any]:
        async with engine.connect() as conn:
            count = (await conn.execute(text(f"SELECT count(*) FROM {authors}"))).scalar_one()
        return {"authors": count}

    @app.get("/pg-sa/engine-per-request")
    async def pg_sa_engine_per_request() -> dict[str, Any]:
        local = create_async_engine(SA_URL)  # expect: connection_per_request
        try:
            async with local.connect() as conn:
                count = (await conn.execute(text(f"SELECT count(*) FROM {events}"))).scalar_one()
        finally:
            await local.dispose()
        return {"events": count}

    return app


N1 = frozenset({"n_plus_one"})
DUP = frozenset({"duplicate_query"})
CONN = frozenset({"connection_per_request"})

CASES = [
    Case("/pg/pooled"),
    Case("/pg/loop", N1),
    Case("/pg/pool-shortcut-loop", N1),
    Case("/pg/prepared-loop", N1),
    Case("/pg/any"),
    Case("/pg/join"),
    Case("/pg/executemany", method="POST"),
    Case("/pg/insert-loop", N1, method="POST"),
    Case("/pg/paginate"),
    Case("/pg/two-queries"),
    Case("/pg/transaction", method="POST"),
    Case("/pg/acquire-twice"),
    Case("/pg/duplicate", DUP),
    Case("/pg/connect-per-request", CONN),
    Case("/pg/pool-per-request", CONN),
    Case("/pg-sa/pooled"),
    Case("/pg-sa/lazy-loop", N1),
    Case("/pg-sa/selectinload"),
    Case("/pg-sa/joinedload"),
    Case("/pg-sa/duplicate", DUP),
    Case("/pg-sa/executemany", method="POST"),
    Case("/pg-sa/nullpool", CONN),
    Case("/pg-sa/engine-per-request", CONN),
]
