"""N+1 queries (guide 001's second pitfall: "making separate database queries in loops").

List ``limit`` authors with their books. The pitfalls run one query for the authors and one
more per author: through an ORM lazy load (async and sync) and through the driver in a loop.
The twins run two queries (``selectinload``; one ``IN (...)`` / ``= ANY($1)``) or one (JOIN).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

import aiosqlite
from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from demo_app.db import Database
from demo_app.models import Author
from demo_app.resources import DatabaseDep, SessionDep, SyncSessionDep
from demo_app.schemas import AuthorBooks, BookBrief

router = APIRouter(tags=["n+1"])

Limit = Annotated[int, Query(ge=1, le=300, description="how many authors")]


def _author_books(author: Author, books: list[Any]) -> AuthorBooks:
    return AuthorBooks(
        id=author.id, name=author.name, books=[BookBrief.model_validate(b) for b in books]
    )


# --- ORM, async --------------------------------------------------------------------------


@router.get("/pitfall/n-plus-one/orm")
async def orm_lazy_loads(session: SessionDep, limit: Limit = 50) -> list[AuthorBooks]:
    authors = (await session.scalars(select(Author).order_by(Author.id).limit(limit))).all()
    result = []
    for author in authors:
        books = await author.awaitable_attrs.books  # one SELECT per author
        result.append(_author_books(author, books))
    return result


@router.get("/fixed/n-plus-one/orm")
async def orm_selectinload(session: SessionDep, limit: Limit = 50) -> list[AuthorBooks]:
    query = select(Author).options(selectinload(Author.books)).order_by(Author.id).limit(limit)
    authors = (await session.scalars(query)).all()
    return [_author_books(author, author.books) for author in authors]


@router.get("/fixed/n-plus-one/orm-join")
async def orm_joinedload(session: SessionDep, limit: Limit = 50) -> list[AuthorBooks]:
    query = select(Author).options(joinedload(Author.books)).order_by(Author.id).limit(limit)
    authors = (await session.scalars(query)).unique().all()
    return [_author_books(author, author.books) for author in authors]


# --- ORM, sync (a def route: the classic lazy load) -------------------------------------


@router.get("/pitfall/n-plus-one/orm-sync")
def orm_sync_lazy_loads(session: SyncSessionDep, limit: Limit = 50) -> list[AuthorBooks]:
    authors = session.scalars(select(Author).order_by(Author.id).limit(limit)).all()
    return [_author_books(author, author.books) for author in authors]  # lazy load each


@router.get("/fixed/n-plus-one/orm-sync")
def orm_sync_selectinload(session: SyncSessionDep, limit: Limit = 50) -> list[AuthorBooks]:
    query = select(Author).options(selectinload(Author.books)).order_by(Author.id).limit(limit)
    authors = session.scalars(query).all()
    return [_author_books(author, author.books) for author in authors]


# --- the driver itself (asyncpg or aiosqlite) ------------------------------------------

_AUTHORS_PG = "SELECT id, name FROM authors ORDER BY id LIMIT $1"
_AUTHORS_SQLITE = "SELECT id, name FROM authors ORDER BY id LIMIT ?"
_BOOKS_OF_PG = "SELECT id, title, year FROM books WHERE author_id = $1 ORDER BY id"
_BOOKS_OF_SQLITE = "SELECT id, title, year FROM books WHERE author_id = ? ORDER BY id"
_BOOKS_OF_ALL_PG = (
    "SELECT id, author_id, title, year FROM books WHERE author_id = ANY($1) ORDER BY id"
)


def _rows_to_authors(authors: list[Any], books: dict[int, list[Any]]) -> list[AuthorBooks]:
    return [
        AuthorBooks(
            id=a["id"],
            name=a["name"],
            books=[BookBrief(id=b["id"], title=b["title"], year=b["year"]) for b in books[a["id"]]],
        )
        for a in authors
    ]


@router.get("/pitfall/n-plus-one/raw")
async def driver_loop(db: DatabaseDep, limit: Limit = 50) -> list[AuthorBooks]:
    books: dict[int, list[Any]] = {}
    if db.pg_pool is not None:
        async with db.pg_pool.acquire() as conn:
            authors = await conn.fetch(_AUTHORS_PG, limit)
            for a in authors:
                books[a["id"]] = await conn.fetch(_BOOKS_OF_PG, a["id"])  # one per author
    else:
        conn = _sqlite(db)
        async with conn.execute(_AUTHORS_SQLITE, (limit,)) as cursor:
            authors = list(await cursor.fetchall())
        for a in authors:
            async with conn.execute(_BOOKS_OF_SQLITE, (a["id"],)) as cursor:  # one per author
                books[a["id"]] = list(await cursor.fetchall())
    return _rows_to_authors(authors, books)


@router.get("/fixed/n-plus-one/raw")
async def driver_one_query(db: DatabaseDep, limit: Limit = 50) -> list[AuthorBooks]:
    books: dict[int, list[Any]] = defaultdict(list)
    if db.pg_pool is not None:
        async with db.pg_pool.acquire() as conn:
            authors = await conn.fetch(_AUTHORS_PG, limit)
            rows = await conn.fetch(_BOOKS_OF_ALL_PG, [a["id"] for a in authors])
    else:
        conn = _sqlite(db)
        async with conn.execute(_AUTHORS_SQLITE, (limit,)) as cursor:
            authors = list(await cursor.fetchall())
        ids = [a["id"] for a in authors]
        marks = ", ".join("?" * len(ids))
        in_query = f"SELECT id, author_id, title, year FROM books WHERE author_id IN ({marks}) "
        async with conn.execute(in_query + "ORDER BY id", ids) as cursor:
            rows = list(await cursor.fetchall())
    for row in rows:
        books[row["author_id"]].append(row)
    return _rows_to_authors(authors, books)


def _sqlite(db: Database) -> aiosqlite.Connection:
    assert db.sqlite is not None
    return db.sqlite
