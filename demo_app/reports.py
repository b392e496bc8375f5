"""The report behind the caching and sync-vs-async pairs: an aggregate read plus a slow query.

``pause`` seconds are spent in the database (``pg_sleep`` / a registered ``sleep()``), standing
in for a query that is slow for real reasons; the result does not depend on it.
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from demo_app.db import Database
from demo_app.schemas import Report, ReportRow

TOP_AUTHORS = text(
    "SELECT a.id AS author_id, a.name AS name, count(b.id) AS books, "
    "sum(b.price_cents) AS total_price_cents "
    "FROM authors a JOIN books b ON b.author_id = a.id "
    "GROUP BY a.id, a.name ORDER BY books DESC, a.id LIMIT 10"
)

#: Long enough to stall the event loop past the default 100 ms threshold when run blocking.
SLOW_SECONDS = 0.15
#: The cached report's cost: small, but paid by every uncached request.
CACHED_REPORT_SECONDS = 0.02


def report_sync(conn: Connection, db: Database, pause: float) -> Report:
    conn.execute(db.pause, {"seconds": pause})
    rows = conn.execute(TOP_AUTHORS).mappings().all()
    return Report(rows=[ReportRow.model_validate(dict(row)) for row in rows])


async def report_async(conn: AsyncConnection, db: Database, pause: float) -> Report:
    await conn.execute(db.pause, {"seconds": pause})
    rows = (await conn.execute(TOP_AUTHORS)).mappings().all()
    return Report(rows=[ReportRow.model_validate(dict(row)) for row in rows])
