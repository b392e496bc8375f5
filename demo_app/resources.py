"""Everything the app opens at startup and closes at shutdown, and the dependencies to reach it.

The lifespan handler (``demo_app.main``) puts one :class:`Resources` on ``app.state.demo``;
routes get its parts by annotating a parameter with ``ResourcesDep``, ``DatabaseDep``,
``SessionDep`` (an ``AsyncSession``) or ``SyncSessionDep`` (a ``Session``, for ``def`` routes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, undefer

from demo_app.cache import TTL_SECONDS, SharedCache, make_ttl_cache
from demo_app.config import Settings
from demo_app.db import Database, close_database, open_database
from demo_app.models import Author, Book
from demo_app.upstream import Upstream

#: About 1.3 MB of JSON. Sized so that the slow path (jsonable_encoder + json.dumps, 12-20 ms
#: here, two or three times that under a profiler or on a busy machine) stays far below the
#: 100 ms loop-blocking threshold: the pitfall is slow serialisation, not a stalled loop.
CATALOG_BOOKS = 600


@dataclass(eq=False)
class Resources:
    settings: Settings
    db: Database
    #: The slow-serialisation pair's payload: the first CATALOG_BOOKS books with their authors,
    #: read once at startup.
    catalog: list[dict[str, Any]]
    #: A client made once and reused (its own connection pool), for the async-HTTP twin.
    http: httpx.AsyncClient
    upstream: Upstream
    shared_cache: SharedCache
    memory_cache: Any = field(default_factory=lambda: make_ttl_cache(128, TTL_SECONDS))
    redis: Any = None


async def open_resources(settings: Settings) -> Resources:
    db = await open_database(settings.database_url)
    redis = None
    upstream = Upstream()
    try:
        if settings.redis_url is not None:
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise RuntimeError(
                    "REDIS_URL is set but redis is not installed: pip install redis"
                ) from None
            redis = aioredis.from_url(settings.redis_url)
            await redis.ping()
        upstream.start()
        return Resources(
            settings=settings,
            db=db,
            catalog=await _load_catalog(db),
            http=httpx.AsyncClient(timeout=10),
            upstream=upstream,
            shared_cache=SharedCache(redis),
            redis=redis,
        )
    except BaseException:
        upstream.stop()
        if redis is not None:
            await redis.aclose()
        await close_database(db)
        raise


async def close_resources(resources: Resources) -> None:
    try:
        await resources.http.aclose()
        resources.upstream.stop()
        if resources.redis is not None:
            await resources.redis.aclose()
    finally:
        await close_database(resources.db)


async def _load_catalog(db: Database) -> list[dict[str, Any]]:
    query = (
        select(Book, Author.name)
        .join(Book.author)
        .options(undefer(Book.summary))
        .order_by(Book.id)
        .limit(CATALOG_BOOKS)
    )
    async with db.sessions() as session:
        rows = (await session.execute(query)).all()
    return [
        {
            "id": book.id,
            "title": book.title,
            "author_id": book.author_id,
            "author": author,
            "year": book.year,
            "pages": book.pages,
            "price_cents": book.price_cents,
            "summary": book.summary,
        }
        for book, author in rows
    ]


def resources_of(request: Request) -> Resources:
    resources: Resources = request.app.state.demo
    return resources


# Dependencies are ``async def`` where they do no I/O: a ``def`` one costs a threadpool hop.
async def get_resources(request: Request) -> Resources:
    return resources_of(request)


async def get_db(request: Request) -> Database:
    return resources_of(request).db


ResourcesDep = Annotated[Resources, Depends(get_resources)]
DatabaseDep = Annotated[Database, Depends(get_db)]


async def get_session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """One AsyncSession per request, from the pool made at startup."""
    async with db.sessions() as session:
        yield session


def get_sync_session(db: DatabaseDep) -> Iterator[Session]:
    with db.sync_sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SyncSessionDep = Annotated[Session, Depends(get_sync_session)]
