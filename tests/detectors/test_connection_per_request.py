"""connection_per_request: connections, pools or engines made inside a request."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from fastprof import FastprofMiddleware
from fastprof.detectors import make_detectors
from fastprof.detectors.connection_per_request import ConnectionPerRequestDetector
from fastprof.findings import Location
from fastprof.queries import ConnectRecord
from fastprof.queries.base import leftovers
from fastprof.record import RequestState
from tests.queries.test_base import line_of

THIS = str(Path(__file__))
SITE = Location("/app/db.py", 5, "get_db")


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    yield
    assert not leftovers()


def connect(
    driver: str = "asyncpg",
    how: str = "connect",
    *,
    duration: float = 0.004,
    location: Location | None = SITE,
    pooled: bool = True,
    detail: str = "",
    kept: bool = False,
    connections: int = 1,
) -> ConnectRecord:
    return ConnectRecord(driver, duration, location, how, pooled, detail, lambda: kept, connections)


def run(*connects: ConnectRecord) -> list[Any]:
    state = RequestState("GET", "/users", time.perf_counter())
    state.route = "GET /users"
    state.connects.extend(connects)
    return ConnectionPerRequestDetector().finish(state)


def test_a_network_connect_per_request_is_high() -> None:
    (finding,) = run(connect())
    assert finding.kind == "connection_per_request" and finding.route == "GET /users"
    assert finding.severity == "high" and finding.location == SITE
    assert finding.evidence == {
        "connects": 1,
        "connect_ms": 4.0,
        "driver": "asyncpg",
        "how": "connect",
    }
    assert "asyncpg.create_pool" in finding.advice and "pool.acquire()" in finding.advice
    assert "guide 001" in finding.advice and "guide 003" in finding.advice


def test_sqlite_connects_are_cheaper_and_said_so() -> None:
    (plain,) = run(connect("sqlite3", duration=0.0002, detail="app.db"))
    assert plain.severity == "low" and "SQLite" in plain.advice
    (slow,) = run(connect("sqlite3", duration=0.006, detail="app.db"))
    assert slow.severity == "medium"
    (threaded,) = run(connect("aiosqlite", duration=0.0002, detail="app.db"))
    assert threaded.severity == "medium" and "thread" in threaded.advice


def test_connections_that_outlive_the_request_are_not_reported() -> None:
    assert run(connect(kept=True)) == []


def test_pools_that_keep_their_connections_are_not_reported() -> None:
    assert run(connect("sqlalchemy", "pool_connect", detail="QueuePool (postgresql+asyncpg)")) == []
    assert run(connect("asyncpg", "pool_connect")) == []


def test_a_nullpool_is_reported_with_its_dialect() -> None:
    record = connect(
        "sqlalchemy", "pool_connect", pooled=False, detail="NullPool (postgresql+asyncpg)"
    )
    (finding,) = run(record, record)
    assert finding.severity == "high"
    assert finding.evidence["connects"] == 2 and "(2 times)" in finding.title
    assert "NullPool" in finding.advice and "pool_size=20, max_overflow=10" in finding.advice
    (local,) = run(
        connect("sqlalchemy", "pool_connect", pooled=False, detail="NullPool (sqlite+pysqlite)")
    )
    assert local.severity == "low"


def test_an_engine_per_request_is_one_finding_with_its_connections() -> None:
    detail = "QueuePool (sqlite+pysqlite)"
    engine = connect("sqlalchemy", "engine", detail=detail, connections=0, duration=0.0001)
    first = connect("sqlalchemy", "engine_connect", detail=detail, duration=0.0002)
    (finding,) = run(engine, first)
    assert finding.evidence["engines_created"] == 1 and finding.evidence["connects"] == 1
    assert finding.evidence["connect_ms"] == pytest.approx(0.3)
    assert finding.severity == "medium"
    assert "Create the engine once" in finding.advice
    assert "A SQLAlchemy engine is created" in finding.title


def test_a_pool_per_request_counts_the_connections_it_opened() -> None:
    (finding,) = run(connect("asyncpg", "pool", connections=3, detail="min_size=3, max_size=10"))
    assert finding.evidence["pools_created"] == 1 and finding.evidence["connects"] == 3
    assert "A pool created per request" in finding.advice


def test_registered_and_takes_no_options() -> None:
    (detector,) = make_detectors(["connection_per_request"])
    assert isinstance(detector, ConnectionPerRequestDetector)
    with pytest.raises(ValueError, match="threshold"):
        ConnectionPerRequestDetector(threshold=1)


async def test_end_to_end_through_the_middleware(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    shared = create_engine(f"sqlite:///{path}")
    app = FastAPI()

    @app.get("/per-request")
    def per_request() -> dict[str, int]:
        conn = sqlite3.connect(path)  # here: connect
        try:
            return {"one": conn.execute("SELECT 1").fetchone()[0]}
        finally:
            conn.close()

    @app.get("/pooled")
    def pooled() -> dict[str, int]:
        with shared.connect() as conn:
            return {"one": conn.execute(text("SELECT 1")).scalar_one()}

    mw = FastprofMiddleware(app, detect=["connection_per_request"])
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            for _ in range(2):
                assert (await client.get("/pooled")).status_code == 200
                assert (await client.get("/per-request")).status_code == 200
    finally:
        mw.close()
        shared.dispose()
    findings = list(mw.store.findings)
    assert [f.route for f in findings] == ["GET /per-request", "GET /per-request"]
    assert all(f.location is not None and f.location.file == THIS for f in findings)
    assert findings[0].location is not None
    assert findings[0].location.line == line_of("here: connect", THIS)
    assert findings[0].evidence["driver"] == "sqlite3"


def test_in_memory_sqlite_is_scratch_space_not_a_missed_pool() -> None:
    assert run(connect("sqlite3", detail=":memory:")) == []
    assert run(connect("aiosqlite", detail="file::memory:?cache=shared")) == []
    assert run(connect("sqlite3", detail="file:x?mode=memory")) == []
    assert len(run(connect("aiosqlite", detail="/data/app.db"))) == 1
