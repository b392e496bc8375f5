"""Sync vs async endpoints doing real database I/O (guides 001, 003, 004; 002 measured both).

Two right ways: a sync driver (sqlite3 / psycopg) in a ``def`` route, which FastAPI runs in its
threadpool, or an async driver (aiosqlite / asyncpg) in an ``async def`` route. The pitfall is
the mix: a sync driver called from ``async def``, which holds the event loop for the whole
query (here 150 ms).
"""

from __future__ import annotations

from fastapi import APIRouter

from demo_app.reports import SLOW_SECONDS, report_async, report_sync
from demo_app.resources import DatabaseDep
from demo_app.schemas import Report

router = APIRouter(tags=["sync vs async"])


@router.get("/pitfall/async-io/report")
async def sync_driver_in_async_route(db: DatabaseDep) -> Report:
    with db.sync_engine.connect() as conn:  # a sync driver, on the event loop
        return report_sync(conn, db, SLOW_SECONDS)


@router.get("/fixed/async-io/report")
async def async_driver_in_async_route(db: DatabaseDep) -> Report:
    async with db.engine.connect() as conn:
        return await report_async(conn, db, SLOW_SECONDS)


@router.get("/fixed/async-io/report-def")
def sync_driver_in_def_route(db: DatabaseDep) -> Report:
    with db.sync_engine.connect() as conn:  # the threadpool's thread waits, not the loop
        return report_sync(conn, db, SLOW_SECONDS)
