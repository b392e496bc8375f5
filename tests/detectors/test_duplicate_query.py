"""duplicate_query: the same read with the same parameters, more than once in a request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
import pytest
from fastapi import FastAPI

from fastprof import FastprofMiddleware
from fastprof.detectors import make_detectors
from fastprof.detectors.duplicate_query import DuplicateQueryDetector
from fastprof.findings import Location
from fastprof.queries import QueryRecord
from fastprof.queries.base import leftovers
from fastprof.record import RequestState
from tests.queries.test_base import line_of

THIS = str(Path(__file__))
FIRST = Location("/app/deps.py", 8, "current_user")
SECOND = Location("/app/routes.py", 30, "profile")


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    yield
    assert not leftovers()


def query(
    sql: str,
    params: Any = (),
    *,
    location: Location | None = FIRST,
    driver: str = "sqlite3",
    many: bool = False,
    duration: float = 0.002,
) -> QueryRecord:
    return QueryRecord(sql, params, duration, driver, location, 0.0, (), 0, many)


def run(*queries: QueryRecord, **options: Any) -> list[Any]:
    state = RequestState("GET", "/me", time.perf_counter())
    state.route = "GET /me"
    state.queries.extend(queries)
    return DuplicateQueryDetector(**options).finish(state)


USER = "SELECT * FROM users WHERE id = ?"


def test_the_same_read_twice_is_reported_at_the_repeat() -> None:
    (finding,) = run(query(USER, (7,)), query(USER, (7,), location=SECOND))
    assert finding.kind == "duplicate_query" and finding.route == "GET /me"
    assert finding.location == SECOND
    assert finding.severity == "low"
    evidence = finding.evidence
    assert evidence["count"] == 2 and evidence["repeats"] == 1
    assert evidence["params"] == "(7,)"
    assert evidence["wasted_ms"] == pytest.approx(2.0)
    assert evidence["call_sites"] == [str(FIRST), str(SECOND)]
    assert "reuse the result" in finding.advice and "guide 003" in finding.advice


def test_other_parameters_are_not_duplicates() -> None:
    assert run(query(USER, (7,)), query(USER, (8,))) == []


def test_other_statements_with_the_same_parameters_are_not_duplicates() -> None:
    assert run(query(USER, (7,)), query("SELECT * FROM orders WHERE user_id = ?", (7,))) == []


def test_writes_pings_sequences_and_executemany_are_left_out() -> None:
    insert = [query("INSERT INTO log VALUES (?)", (1,)) for _ in range(3)]
    ping = [query("SELECT 1") for _ in range(3)]
    nextval = [query("SELECT nextval('seq')") for _ in range(3)]
    many = [query("SELECT * FROM t WHERE id = ?", [(1,)], many=True) for _ in range(3)]
    assert run(*insert, *ping, *nextval, *many) == []


def test_a_loop_repeating_several_parameter_sets_is_one_finding() -> None:
    loop = [query(USER, (i % 3,), location=SECOND) for i in range(9)]
    (finding,) = run(*loop)
    assert finding.evidence["parameter_sets"] == 3
    assert finding.evidence["count"] == 9 and finding.evidence["repeats"] == 6
    assert finding.severity == "medium"


def test_the_threshold_is_an_option() -> None:
    twice = [query(USER, (7,)), query(USER, (7,))]
    assert run(*twice, threshold=3) == []
    assert len(run(*twice, query(USER, (7,)), threshold=3)) == 1
    with pytest.raises(ValueError, match="at least 2"):
        DuplicateQueryDetector(threshold=1)
    with pytest.raises(ValueError, match="window"):
        DuplicateQueryDetector(window=3)


def test_orm_advice_mentions_the_identity_map() -> None:
    (finding,) = run(query(USER, (1,), driver="sqlalchemy"), query(USER, (1,), driver="sqlalchemy"))
    assert "identity map" in finding.advice


def test_registered() -> None:
    (detector,) = make_detectors(["duplicate_query"])
    assert isinstance(detector, DuplicateQueryDetector) and detector.threshold == 2


async def test_end_to_end_through_the_middleware(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    app = FastAPI()

    @app.get("/me")
    async def me() -> dict[str, Any]:
        db = app.state.db
        user = await db.execute_fetchall("SELECT * FROM users WHERE id = ?", (1,))
        again = await db.execute_fetchall("SELECT * FROM users WHERE id = ?", (1,))  # here: again
        return {"same": list(user) == list(again)}

    mw = FastprofMiddleware(app, detect=["duplicate_query"])
    async with aiosqlite.connect(path) as db:
        await db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        await db.execute("INSERT INTO users VALUES (1, 'ada')")
        app.state.db = db
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=mw), base_url="http://t"
            ) as client:
                assert (await client.get("/me")).json() == {"same": True}
        finally:
            mw.close()
    (finding,) = mw.store.findings
    assert finding.kind == "duplicate_query" and finding.route == "GET /me"
    assert finding.location is not None and finding.location.file == THIS
    assert finding.location.line == line_of("here: again", THIS)
    assert finding.evidence["driver"] == "aiosqlite"
