"""n_plus_one: repeated query shapes from one call site, and the fix for what issued them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fastprof import FastprofMiddleware
from fastprof.detectors import make_detectors
from fastprof.detectors.n_plus_one import NPlusOneDetector
from fastprof.findings import Location
from fastprof.queries import QueryRecord
from fastprof.queries.base import get_hook, leftovers
from fastprof.record import RequestState
from tests.queries.test_base import line_of

THIS = str(Path(__file__))
SITE = Location("/app/routes.py", 12, "list_authors")
OTHER = Location("/app/routes.py", 20, "list_authors")


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    yield
    assert not leftovers()


def query(
    sql: str,
    params: Any = (),
    *,
    location: Location | None = SITE,
    driver: str = "sqlite3",
    many: bool = False,
    orm: tuple[tuple[str, str], ...] = (),
    duration: float = 0.0001,
) -> QueryRecord:
    return QueryRecord(sql, params, duration, driver, location, 0.0, orm, 0, many)


def run(*queries: QueryRecord, **options: Any) -> list[Any]:
    state = RequestState("GET", "/authors", time.perf_counter())
    state.queries.extend(queries)
    return NPlusOneDetector(**options).finish(state)


def loop(sql: str, count: int, **kwargs: Any) -> list[QueryRecord]:
    return [query(sql, (i,), **kwargs) for i in range(count)]


def test_five_repeats_with_different_params_are_an_n_plus_one() -> None:
    (finding,) = run(*loop("SELECT * FROM book WHERE author_id = ?", 5))
    assert finding.kind == "n_plus_one"
    assert finding.location == SITE
    assert finding.severity == "medium"
    evidence = finding.evidence
    assert evidence["count"] == 5 and evidence["distinct_params"] == 5
    assert evidence["sql"] == "SELECT * FROM book WHERE author_id = ?"
    assert evidence["total_ms"] == pytest.approx(0.5)
    assert evidence["params_examples"] == ["(0,)", "(1,)", "(2,)"]
    assert "WHERE author_id IN (...)" in finding.advice
    assert "guide 001" in finding.advice


def test_four_repeats_are_not() -> None:
    assert run(*loop("SELECT * FROM book WHERE author_id = ?", 4)) == []


def test_literals_in_the_text_count_as_parameters() -> None:
    queries = [query(f"SELECT name FROM author WHERE id = {i}") for i in range(6)]
    (finding,) = run(*queries)
    assert finding.evidence["distinct_params"] == 6


def test_identical_repeats_are_left_to_duplicate_query() -> None:
    assert run(*[query("SELECT * FROM book WHERE author_id = ?", (1,)) for _ in range(8)]) == []


def test_different_call_sites_are_different_groups() -> None:
    sql = "SELECT * FROM book WHERE author_id = ?"
    queries = loop(sql, 3) + loop(sql, 3, location=OTHER)
    assert run(*queries) == []


def test_executemany_and_control_statements_never_count() -> None:
    many = [query("INSERT INTO t VALUES (?)", [(i,)], many=True) for i in range(6)]
    control = [query(f"SAVEPOINT sp{i}") for i in range(6)]
    pragma = [query(f"PRAGMA table_info(t{i})") for i in range(6)]
    assert run(*many, *control, *pragma) == []


def test_three_pages_are_not_an_n_plus_one() -> None:
    pages = [query("SELECT * FROM book LIMIT ? OFFSET ?", (5, p * 5)) for p in range(3)]
    assert run(*pages) == []


def test_thresholds_are_options() -> None:
    sql = "SELECT * FROM book WHERE author_id = ?"
    assert len(run(*loop(sql, 3), threshold=3)) == 1
    assert run(*loop(sql, 6), min_total_ms=1.0) == []
    assert len(run(*loop(sql, 6, duration=0.001), min_total_ms=1.0)) == 1
    with pytest.raises(ValueError, match="at least 2"):
        NPlusOneDetector(threshold=1)
    with pytest.raises(ValueError, match="treshold"):
        NPlusOneDetector(treshold=5)
    with pytest.raises(ValueError, match="min_total_ms"):
        NPlusOneDetector(min_total_ms=-1)


def test_severity_rises_with_count_or_time() -> None:
    sql = "SELECT * FROM book WHERE author_id = ?"
    assert run(*loop(sql, 20))[0].severity == "high"
    assert run(*loop(sql, 5, duration=0.011))[0].severity == "high"


def test_a_lazy_load_names_the_relationship_and_its_eager_option() -> None:
    orm = (("lazy_load", "Author.books"), ("direction", "ONETOMANY"), ("parent", "Author"))
    sql = "SELECT book.id FROM book WHERE ? = book.author_id"
    (finding,) = run(*loop(sql, 6, driver="sqlalchemy", orm=orm))
    assert finding.evidence["relationship"] == "Author.books"
    assert "selectinload(Author.books)" in finding.advice
    assert "select(Author).options(selectinload(Author.books))" in finding.advice
    assert "lazy load of Author.books" in finding.title


def test_a_many_to_one_lazy_load_suggests_joinedload() -> None:
    orm = (("lazy_load", "Book.author"), ("direction", "MANYTOONE"))
    (finding,) = run(*loop("SELECT author.id FROM author WHERE author.id = ?", 5, orm=orm))
    assert "select(Book).options(joinedload(Book.author))" in finding.advice


def test_a_lazy_load_during_serialisation_says_so() -> None:
    orm = (("lazy_load", "Author.books"), ("direction", "ONETOMANY"), ("during", "serialization"))
    (finding,) = run(*loop("SELECT book.id FROM book WHERE ? = book.author_id", 5, orm=orm))
    assert finding.evidence["during"] == "serialization"
    assert "serialised" in finding.advice and 'lazy="raise"' in finding.advice


def test_a_write_loop_suggests_executemany() -> None:
    (raw,) = run(*loop("INSERT INTO event (name) VALUES (?)", 5))
    assert "executemany" in raw.advice and raw.title.endswith("INSERT query ran 5 times")
    (pg,) = run(*loop("INSERT INTO event (name) VALUES ($1)", 5, driver="asyncpg"))
    assert "asyncpg pipelines it" in pg.advice
    (orm,) = run(*loop("INSERT INTO event (name) VALUES (?)", 5, driver="sqlalchemy"))
    assert "session.execute(insert(...), rows)" in orm.advice


def test_asyncpg_loops_suggest_any() -> None:
    (finding,) = run(*loop("SELECT * FROM book WHERE author_id = $1", 5, driver="asyncpg"))
    assert "WHERE author_id = ANY($1::int[])" in finding.advice


def test_session_get_in_a_loop_is_recognised_from_the_source_line(tmp_path: Path) -> None:
    source = tmp_path / "routes.py"
    source.write_text("x = 1\nauthor = session.get(Author, author_id)\n")
    site = Location(str(source), 2, "handler")
    sql = "SELECT author.id FROM author WHERE author.id = ?"
    (finding,) = run(*loop(sql, 5, driver="sqlalchemy", location=site))
    assert "session.get() in a loop" in finding.advice
    assert "in_(ids)" in finding.advice


def test_registered_and_hooks_installed_only_while_started() -> None:
    (detector,) = make_detectors(["n_plus_one"], {"n_plus_one": {"threshold": 3}})
    assert isinstance(detector, NPlusOneDetector) and detector.threshold == 3
    detector.start()
    try:
        assert get_hook("sqlite3").installed
    finally:
        detector.stop()
    assert not get_hook("sqlite3").installed


async def test_end_to_end_through_the_middleware(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE book (id INTEGER PRIMARY KEY, author_id INTEGER)")
        setup.executemany("INSERT INTO book (author_id) VALUES (?)", [(i % 6,) for i in range(30)])
    setup.close()
    app = FastAPI()

    @app.get("/authors/{count}/books")
    def books(count: int) -> dict[str, int]:
        conn = sqlite3.connect(path)
        try:
            total = 0
            for author_id in range(count):
                sql = "SELECT id FROM book WHERE author_id = ?"
                total += len(conn.execute(sql, (author_id,)).fetchall())  # here: loop
            return {"books": total}
        finally:
            conn.close()

    mw = FastprofMiddleware(app, detect=["n_plus_one"])
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=mw), base_url="http://t"
        ) as client:
            assert (await client.get("/authors/6/books")).json() == {"books": 30}
            assert (await client.get("/authors/2/books")).status_code == 200
    finally:
        mw.close()
    findings = [f for f in mw.store.findings if f.kind == "n_plus_one"]
    assert len(findings) == 1
    (finding,) = findings
    assert finding.route == "GET /authors/{count}/books"
    assert finding.location is not None and finding.location.file == THIS
    assert finding.location.line == line_of("here: loop", THIS)
    assert finding.evidence["count"] == 6
    assert not get_hook("sqlite3").installed
