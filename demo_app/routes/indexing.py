"""A lookup by a column without an index vs the same lookup by an indexed column.

Guides 001 and 004 say to index the columns queries filter on. ``customers`` has 600,000 rows
and every email twice: in ``email_plain`` (no index: the database reads the whole table, about
30 ms) and in ``email`` (indexed: a fraction of a millisecond). fastprof's ``slow_query``
reports the first with the plan (a full scan of ``customers`` filtering on ``email_plain``) and
the ``CREATE INDEX`` that fixes it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import text

from demo_app.resources import DatabaseDep
from demo_app.schemas import CustomerOut
from demo_app.seed import LOOKUP_EMAIL

router = APIRouter(tags=["indexing"])

BY_PLAIN_EMAIL = text("SELECT id, email FROM customers WHERE email_plain = :email")
BY_EMAIL = text("SELECT id, email FROM customers WHERE email = :email")


@router.get("/pitfall/indexing/customer")
async def customer_unindexed(db: DatabaseDep, email: str = LOOKUP_EMAIL) -> CustomerOut:
    async with db.engine.connect() as conn:
        row = (await conn.execute(BY_PLAIN_EMAIL, {"email": email})).mappings().first()
    if row is None:
        raise HTTPException(404, f"no customer {email}")
    return CustomerOut.model_validate(dict(row))


@router.get("/fixed/indexing/customer")
async def customer_indexed(db: DatabaseDep, email: str = LOOKUP_EMAIL) -> CustomerOut:
    async with db.engine.connect() as conn:
        row = (await conn.execute(BY_EMAIL, {"email": email})).mappings().first()
    if row is None:
        raise HTTPException(404, f"no customer {email}")
    return CustomerOut.model_validate(dict(row))
