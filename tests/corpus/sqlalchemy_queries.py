"""SQLAlchemy on SQLite, sync (``def`` endpoints, run in the threadpool) and asyncio (aiosqlite).

Positives: lazy loads in loops (one-to-many and many-to-one, sync and ``awaitable_attrs``),
``session.get`` in a loop, a lazy load fired while FastAPI serialises ORM objects through a
response model (marked at the query that loaded the parents: where ``selectinload`` belongs),
identical queries, an engine built per request, a ``NullPool`` engine. Negatives: the eager
loaders, an ``IN`` batch, ``executemany``, three pages, two unrelated queries, a pooled engine.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, String, create_engine, insert, select, text
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
    subqueryload,
)
from sqlalchemy.pool import NullPool

from tests.corpus import Case

AUTHORS = 8
BOOKS_PER_AUTHOR = 3


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    books: Mapped[list[Book]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


class Event(Base):
    __tablename__ = "event"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class BookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str


class AuthorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    books: list[BookOut]


_sessions: dict[str, Any] = {}


def get_session() -> Iterator[Session]:
    with _sessions["sync"]() as session:
        yield session


async def get_async_session() -> AsyncIterator[AsyncSession]:
    async with _sessions["async"]() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
AsyncSessionDep = Annotated[AsyncSession, Depends(get_async_session)]


def build() -> FastAPI:
    path = os.path.join(tempfile.mkdtemp(prefix="fastprof-corpus-sa-"), "books.db")
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for a in range(1, AUTHORS + 1):
            books = [Book(title=f"book {a}.{b}") for b in range(BOOKS_PER_AUTHOR)]
            session.add(Author(id=a, name=f"author {a}", books=books))
        session.commit()
    make_session = sessionmaker(engine)
    nullpool_engine = create_engine(url, poolclass=NullPool)
    async_engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    make_async_session = async_sessionmaker(async_engine, expire_on_commit=False)
    _sessions["sync"] = make_session
    _sessions["async"] = make_async_session

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await async_engine.dispose()
        nullpool_engine.dispose()
        engine.dispose()

    app = FastAPI(lifespan=lifespan)

    # --- sync ORM -------------------------------------------------------------------------

    @app.get("/sa/lazy-loop")
    def lazy_loop(session: SessionDep) -> dict[str, int]:
        total = 0
        for author in session.scalars(select(Author)).all():
            total += len(author.books)  # expect: n_plus_one
        return {"books": total}

    @app.get("/sa/lazy-many-to-one")
    def lazy_many_to_one(session: SessionDep) -> dict[str, int]:
        names = set()
        for book in session.scalars(select(Book)).all():
            names.add(book.author.name)  # expect: n_plus_one
        return {"authors": len(names)}

    @app.get("/sa/selectinload")
    def eager_selectin(session: SessionDep) -> dict[str, int]:
        query = select(Author).options(selectinload(Author.books))
        return {"books": sum(len(a.books) for a in session.scalars(query).all())}

    @app.get("/sa/joinedload")
    def eager_joined(session: SessionDep) -> dict[str, int]:
        query = select(Author).options(joinedload(Author.books))
        return {"books": sum(len(a.books) for a in session.scalars(query).unique().all())}

    @app.get("/sa/subqueryload")
    def eager_subquery(session: SessionDep) -> dict[str, int]:
        query = select(Author).options(subqueryload(Author.books))
        return {"books": sum(len(a.books) for a in session.scalars(query).all())}

    @app.get("/sa/get-loop")
    def get_loop(session: SessionDep) -> dict[str, list[str]]:
        names = []
        for author_id in range(1, AUTHORS + 1):
            names.append(session.get(Author, author_id).name)  # expect: n_plus_one
        return {"names": names}

    @app.get("/sa/in-batch")
    def in_batch(session: SessionDep) -> dict[str, list[str]]:
        ids = list(range(1, AUTHORS + 1))
        authors = session.scalars(select(Author).where(Author.id.in_(ids))).all()
        return {"names": [a.name for a in authors]}

    @app.get("/sa/serialize-lazy", response_model=list[AuthorOut])
    def serialize_lazy(session: SessionDep) -> Any:
        return session.scalars(select(Author)).all()  # expect: n_plus_one

    @app.get("/sa/serialize-eager", response_model=list[AuthorOut])
    def serialize_eager(session: SessionDep) -> Any:
        return session.scalars(select(Author).options(selectinload(Author.books))).all()

    @app.get("/sa/duplicate")
    def duplicate(session: SessionDep) -> dict[str, int]:
        query = select(Book).where(Book.author_id == 2)
        first = session.scalars(query).all()
        again = session.scalars(query).all()  # expect: duplicate_query
        return {"books": len(first) + len(again)}

    @app.get("/sa/text-loop-repeats")
    def text_loop_repeats(session: SessionDep) -> dict[str, int]:
        # One author per book: the ids repeat, so this is an N+1 and a duplicate at once.
        found = 0
        book_rows = session.execute(text("SELECT id, author_id FROM book")).all()
        for _, author_id in book_rows:
            query = text("SELECT name FROM author WHERE id = :id")
            found += len(session.execute(query, {"id": author_id}).all())  # expect: n_plus_one
        return {"found": found}

    @app.post("/sa/executemany")
    def executemany(session: SessionDep) -> dict[str, int]:
        rows = [{"name": f"event {i}"} for i in range(20)]
        session.execute(insert(Event), rows)
        session.commit()
        return {"inserted": len(rows)}

    @app.post("/sa/insert-loop")
    def insert_loop(session: SessionDep) -> dict[str, int]:
        for i in range(10):
            session.execute(insert(Event).values(name=f"looped {i}"))  # expect: n_plus_one
        session.commit()
        return {"inserted": 10}

    @app.get("/sa/paginate")
    def paginate(session: SessionDep) -> dict[str, int]:
        seen = 0
        for page in range(3):
            query = select(Book).order_by(Book.id).limit(5).offset(page * 5)
            seen += len(session.scalars(query).all())
        return {"seen": seen}

    @app.get("/sa/two-queries")
    def two_queries(session: SessionDep) -> dict[str, int]:
        authors = session.scalars(select(Author)).all()
        books = session.scalars(select(Book).where(Book.author_id == 1)).all()
        return {"authors": len(authors), "books": len(books)}

    @app.get("/sa/engine-per-request")
    def engine_per_request() -> dict[str, int]:
        local = create_engine(url)  # expect: connection_per_request
        try:
            with local.connect() as conn:
                count = conn.execute(text("SELECT count(*) FROM author")).scalar_one()
        finally:
            local.dispose()
        return {"authors": count}

    @app.get("/sa/nullpool")
    def nullpool() -> dict[str, int]:
        with nullpool_engine.connect() as conn:  # expect: connection_per_request
            count = conn.execute(text("SELECT count(*) FROM book")).scalar_one()
        return {"books": count}

    @app.get("/sa/pooled")
    def pooled() -> dict[str, int]:
        with engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM book")).scalar_one()
        return {"books": count}

    # --- asyncio ORM ----------------------------------------------------------------------

    @app.get("/sa-async/lazy-loop")
    async def async_lazy_loop(session: AsyncSessionDep) -> Any:
        total = 0
        for author in (await session.scalars(select(Author))).all():
            total += len(await author.awaitable_attrs.books)  # expect: n_plus_one
        return {"books": total}

    @app.get("/sa-async/selectinload")
    async def async_selectin(session: AsyncSessionDep) -> Any:
        query = select(Author).options(selectinload(Author.books))
        authors = (await session.scalars(query)).all()
        return {"books": sum(len(a.books) for a in authors)}

    @app.get("/sa-async/get-loop")
    async def async_get_loop(session: AsyncSessionDep) -> Any:
        names = []
        for author_id in range(1, AUTHORS + 1):
            author = await session.get(Author, author_id)  # expect: n_plus_one
            names.append(author.name if author else "")
        return {"names": names}

    @app.get("/sa-async/duplicate")
    async def async_duplicate(session: AsyncSessionDep) -> Any:
        query = select(Author).where(Author.name == "author 3")
        first = (await session.scalars(query)).all()
        again = (await session.scalars(query)).all()  # expect: duplicate_query
        return {"found": len(first) + len(again)}

    @app.get("/sa-async/engine-per-request")
    async def async_engine_per_request() -> Any:
        local = create_async_engine(f"sqlite+aiosqlite:///{path}")  # expect: connection_per_request
        try:
            async with local.connect() as conn:
                count = (await conn.execute(text("SELECT count(*) FROM book"))).scalar_one()
        finally:
            await local.dispose()
        return {"books": count}

    @app.get("/sa-async/pooled")
    async def async_pooled(session: AsyncSessionDep) -> Any:
        count = (await session.execute(text("SELECT count(*) FROM author"))).scalar_one()
        return {"authors": count}

    return app


N1 = frozenset({"n_plus_one"})
DUP = frozenset({"duplicate_query"})
CONN = frozenset({"connection_per_request"})

CASES = [
    Case("/sa/lazy-loop", N1),
    Case("/sa/lazy-many-to-one", N1),
    Case("/sa/selectinload"),
    Case("/sa/joinedload"),
    Case("/sa/subqueryload"),
    Case("/sa/get-loop", N1),
    Case("/sa/in-batch"),
    Case("/sa/serialize-lazy", N1),
    Case("/sa/serialize-eager"),
    Case("/sa/duplicate", DUP),
    Case("/sa/text-loop-repeats", N1, ignore=DUP),
    Case("/sa/executemany", method="POST"),
    Case("/sa/insert-loop", N1, method="POST"),
    Case("/sa/paginate"),
    Case("/sa/two-queries"),
    Case("/sa/engine-per-request", CONN),
    Case("/sa/nullpool", CONN),
    Case("/sa/pooled"),
    Case("/sa-async/lazy-loop", N1),
    Case("/sa-async/selectinload"),
    Case("/sa-async/get-loop", N1),
    Case("/sa-async/duplicate", DUP),
    Case("/sa-async/engine-per-request", CONN),
    Case("/sa-async/pooled"),
]
