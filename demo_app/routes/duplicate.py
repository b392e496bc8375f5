"""The same query twice in one request (guide 001, "query optimisation": fewer round trips).

A common shape: a dependency checks that the author exists, then the route loads the author
again. The twin's dependency returns what it loaded and the route uses it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from sqlalchemy import select

from demo_app.models import Author
from demo_app.resources import SessionDep
from demo_app.schemas import AuthorOut

router = APIRouter(tags=["duplicate query"])


# The example lets `fastprof scan` call these routes without a scenario.
AuthorId = Annotated[int, Path(examples=[7])]


async def existing_author(author_id: AuthorId, session: SessionDep) -> Author:
    author = await session.scalar(select(Author).where(Author.id == author_id))
    if author is None:
        raise HTTPException(status_code=404, detail=f"no author {author_id}")
    return author


ExistingAuthor = Annotated[Author, Depends(existing_author)]


@router.get("/pitfall/duplicate/authors/{author_id}", dependencies=[Depends(existing_author)])
async def author_loaded_twice(author_id: AuthorId, session: SessionDep) -> AuthorOut:
    author = await session.scalar(select(Author).where(Author.id == author_id))  # again
    return AuthorOut.model_validate(author)


@router.get("/fixed/duplicate/authors/{author_id}")
async def author_loaded_once(author: ExistingAuthor) -> AuthorOut:
    return AuthorOut.model_validate(author)
