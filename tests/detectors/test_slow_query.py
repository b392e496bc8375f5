from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from fastprof import FastprofMiddleware
from fastprof.detectors.slow_query import SlowQueryDetector
from fastprof.queries import explain
from tests.conftest import require_service

ROWS = 200_000
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def big_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table large enough that a lookup by an unindexed column takes milliseconds."""
    path = tmp_path_factory.mktemp("slow") / "big.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, email TEXT, city TEXT)")
    conn.executemany(
        "INSERT INTO customer (email, city) VALUES (?, ?)",
        ((f"user{i}@example.com", f"city{i % 50}") for i in range(ROWS)),
    )
    conn.execute("CREATE INDEX ix_customer_city ON customer (city)")
    conn.commit()
    conn.close()
    return path


@pytest.fixture(autouse=True)
def fresh_plans() -> Iterator[None]:
    explain.plans.clear()
    yield
    explain.plans.clear()


async def call(app: FastAPI, path: str, **detector: Any) -> list[Any]:
    mw = FastprofMiddleware(app, detect=[SlowQueryDetector(**detector)])
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=mw)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get(path)
                assert response.status_code == 200, response.text
                body = response.json()
    finally:
        mw.close()
    return [body, [f for f in mw.store.findings if f.kind == "slow_query"]]


def sqlite_app(path: Path) -> FastAPI:
    app = FastAPI()

    @app.get("/by-email")
    def by_email() -> dict[str, Any]:
        conn = sqlite3.connect(path)
        try:
            row = conn.execute(
                "SELECT * FROM customer WHERE email = ?", ("user199999@example.com",)
            ).fetchone()  # the slow line
        finally:
            conn.close()
        return {"id": row[0]}

    @app.get("/by-city")
    def by_city() -> dict[str, Any]:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT id FROM customer WHERE city = ?", ("city7",)).fetchall()
        finally:
            conn.close()
        return {"n": len(rows)}

    return app


async def test_sqlite_full_scan_names_the_column_and_the_index(big_sqlite: Path) -> None:
    body, findings = await call(sqlite_app(big_sqlite), "/by-email", threshold_ms=0.1)
    assert body == {"id": ROWS}  # the app's answer is untouched by the EXPLAIN
    assert len(findings) == 1
    finding = findings[0]
    scan = finding.evidence["seq_scan"]
    assert scan["table"] == "customer" and scan["columns"] == ["email"]
    assert scan["rows"] == ROWS
    assert finding.evidence["suggested_index"] == (
        "CREATE INDEX ix_customer_email ON customer (email)"
    )
    assert finding.evidence["select_star"] is True
    assert finding.evidence["plan"]["database"] == "sqlite"
    assert any("SCAN customer" in line for line in finding.evidence["plan"]["plan"])
    assert finding.location is not None and finding.location.function == "by_email"
    assert "CREATE INDEX ix_customer_email" in finding.advice and "SELECT *" in finding.advice
    assert "full scan of customer" in finding.title
    assert finding.route == "GET /by-email"


async def test_an_indexed_query_over_the_threshold_has_no_scan(big_sqlite: Path) -> None:
    _, findings = await call(sqlite_app(big_sqlite), "/by-city", threshold_ms=0.001)
    assert len(findings) == 1
    assert "seq_scan" not in findings[0].evidence
    assert any("USING COVERING INDEX" in line for line in findings[0].evidence["plan"]["plan"])
    assert findings[0].evidence["select_star"] is False


async def test_fast_queries_are_not_reported(big_sqlite: Path) -> None:
    _, findings = await call(sqlite_app(big_sqlite), "/by-email", threshold_ms=10_000)
    assert findings == []
    assert explain.plans == {}  # nothing was explained either


async def test_explain_false_asks_for_no_plan(big_sqlite: Path) -> None:
    _, findings = await call(sqlite_app(big_sqlite), "/by-email", threshold_ms=0.1, explain=False)
    assert len(findings) == 1 and "plan" not in findings[0].evidence
    assert explain.plans == {}


async def test_a_statement_shape_is_explained_once(big_sqlite: Path) -> None:
    app = sqlite_app(big_sqlite)
    mw = FastprofMiddleware(app, detect=[SlowQueryDetector(threshold_ms=0.1)])
    try:
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(3):
                await client.get("/by-email")
            assert len(explain.plans) == 1
            plan = next(iter(explain.plans.values()))
            assert plan is not None and plan.explain_ms > 0
    finally:
        mw.close()
    findings = [f for f in mw.store.findings if f.kind == "slow_query"]
    assert len(findings) == 3 and all("seq_scan" in f.evidence for f in findings)
    # the EXPLAIN's own statements are not counted as the app's queries
    assert all(f.evidence["count"] == 1 for f in findings)


async def test_sqlalchemy_on_sqlite(big_sqlite: Path) -> None:
    engine = create_engine(f"sqlite:///{big_sqlite}")
    app = FastAPI()

    @app.get("/orm")
    def lookup() -> dict[str, Any]:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT id FROM customer WHERE email = :email"),
                {"email": "user199999@example.com"},  # SQLite scans until the first row
            ).one()
        return {"id": row[0]}

    try:
        body, findings = await call(app, "/orm", threshold_ms=0.1)
    finally:
        engine.dispose()
    assert body == {"id": ROWS}
    assert findings[0].evidence["seq_scan"]["columns"] == ["email"]
    assert findings[0].evidence["driver"] == "sqlalchemy"


@pytest.fixture(scope="module")
def pg_table() -> Iterator[str]:
    require_service("postgres", "127.0.0.1", 5432)
    import psycopg

    table = f"fp_slow_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, email text, city text)")
        conn.execute(
            f"INSERT INTO {table} (email, city) SELECT 'user' || g || '@example.com', "
            f"'city' || (g % 50) FROM generate_series(1, {ROWS}) AS g"
        )
        conn.execute(f"ANALYZE {table}")
    yield table
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


async def test_asyncpg_plan_inside_a_transaction(pg_table: str) -> None:
    import asyncpg

    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder["pool"] = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=2)
        yield
        await holder["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/pg")
    async def pg_lookup() -> dict[str, Any]:
        async with holder["pool"].acquire() as conn, conn.transaction():
            await conn.execute(f"UPDATE {pg_table} SET city = city WHERE id = 1")
            row = await conn.fetchrow(
                f"SELECT id, email FROM {pg_table} WHERE email = $1", "user77@example.com"
            )
            # the transaction is still usable after the EXPLAIN
            count = await conn.fetchval(f"SELECT count(*) FROM {pg_table} WHERE id < 10")
        return {"id": row["id"], "count": count}

    body, findings = await call(app, "/pg", threshold_ms=0.001, large_table_rows=1000)
    assert body == {"id": 77, "count": 9}
    by_sql = {f.evidence["sql"].split(" WHERE")[0]: f for f in findings}
    lookup = by_sql[f"SELECT id, email FROM {pg_table}"]
    scan = lookup.evidence["seq_scan"]
    assert scan["table"] == pg_table and scan["columns"] == ["email"]
    assert scan["rows"] is not None and abs(scan["rows"] - ROWS) < ROWS * 0.1
    assert lookup.evidence["plan"]["database"] == "postgresql"
    assert lookup.evidence["suggested_index"] == (
        f"CREATE INDEX CONCURRENTLY ix_{pg_table}_email ON {pg_table} (email)"
    )
    assert lookup.location is not None and lookup.location.function == "pg_lookup"
    # the UPDATE was planned, never run a second time: its plan has no ANALYZE figures
    update = next(f for f in findings if f.evidence["sql"].startswith("UPDATE"))
    assert "actual" not in str(update.evidence["plan"]).lower()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_sqlalchemy_on_postgresql(pg_table: str, driver: str) -> None:
    url = f"postgresql+{driver}://postgres@127.0.0.1:5432/test"
    app = FastAPI()
    if driver == "asyncpg":
        engine: Any = create_async_engine(url)

        @app.get("/lookup")
        async def lookup_async() -> dict[str, Any]:
            async with engine.begin() as conn:
                row = (
                    await conn.execute(
                        text(f"SELECT * FROM {pg_table} WHERE email = :email"),
                        {"email": "user9@example.com"},
                    )
                ).one()
                after = (await conn.execute(text("SELECT 1"))).scalar()
            return {"id": row[0], "after": after}

    else:
        engine = create_engine(url)

        @app.get("/lookup")
        def lookup_sync() -> dict[str, Any]:
            with engine.begin() as conn:
                row = conn.execute(
                    text(f"SELECT * FROM {pg_table} WHERE email = :email"),
                    {"email": "user9@example.com"},
                ).one()
                after = conn.execute(text("SELECT 1")).scalar()
            return {"id": row[0], "after": after}

    try:
        body, findings = await call(app, "/lookup", threshold_ms=0.1, large_table_rows=1000)
    finally:
        if driver == "asyncpg":
            await engine.dispose()
        else:
            engine.dispose()
    assert body == {"id": 9, "after": 1}
    finding = next(f for f in findings if "seq_scan" in f.evidence)
    assert finding.evidence["seq_scan"]["columns"] == ["email"]
    assert finding.evidence["select_star"] is True


def test_postgres_plan_parsing() -> None:
    document = [
        {
            "Plan": {
                "Node Type": "Gather",
                "Plan Rows": 1,
                "Total Cost": 10.0,
                "Plans": [
                    {
                        "Node Type": "Parallel Seq Scan",
                        "Relation Name": "users",
                        "Filter": "((lower(email) = 'x'::text) AND (age > 30))",
                        "Plan Rows": 1,
                        "Total Cost": 9.0,
                    }
                ],
            }
        }
    ]
    lines, scans = explain.parse_postgres(document)
    assert lines[0].startswith("Gather") and lines[1].startswith("  Parallel Seq Scan on users")
    assert scans[0].table == "users" and scans[0].columns == ("email", "age")


@pytest.mark.parametrize(
    ("text_", "columns"),
    [
        ("((email)::text = 'a'::text)", ("email",)),
        ("(t.score >= 10)", ("score",)),
        ('("Name" ~~ \'a%\'::text)', ("Name",)),
        ("(city = ANY ('{a,b}'::text[]))", ("city",)),
        ("", ()),
    ],
)
def test_filter_columns(text_: str, columns: tuple[str, ...]) -> None:
    assert explain.filter_columns(text_) == columns


@pytest.mark.parametrize(
    ("sql", "columns"),
    [
        ("SELECT * FROM t WHERE email = ? AND t.age > 3 ORDER BY id", ("email", "age")),
        ("select id from t where city in (1, 2) limit 5", ("city",)),
        ("UPDATE t SET a = 1 WHERE b LIKE 'x%'", ("b",)),
        ("SELECT * FROM t", ()),
    ],
)
def test_where_columns(sql: str, columns: tuple[str, ...]) -> None:
    assert explain.where_columns(sql) == columns


def test_select_star() -> None:
    assert explain.selects_star("SELECT * FROM t")
    assert explain.selects_star("select t.* from t join u on u.id = t.u")
    assert not explain.selects_star("SELECT count(*) FROM t")
    assert not explain.selects_star("SELECT id FROM t")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold_ms=-1 is not valid"):
        SlowQueryDetector(threshold_ms=-1)
    with pytest.raises(ValueError, match="large_table_rows='many' is not valid"):
        SlowQueryDetector(large_table_rows="many")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="explain=1 is not valid"):
        SlowQueryDetector(explain=1)  # type: ignore[arg-type]


def test_watching_is_counted() -> None:
    a, b = SlowQueryDetector(threshold_ms=50), SlowQueryDetector(threshold_ms=5)
    a.start()
    b.start()
    assert explain.over == 0.005
    b.stop()
    assert explain.over == 0.05
    a.stop()
    assert explain.over == float("inf")


def _state(duration: float) -> Any:
    from fastprof.queries import QueryRecord
    from fastprof.record import RequestState

    state = RequestState("GET", "/x", 0.0, route="GET /x")
    state.queries.append(
        QueryRecord("SELECT id FROM t WHERE a = ?", (1,), duration, "sqlite3", None, 1.0)
    )
    return state


def test_a_shape_is_judged_on_the_fastest_of_its_runs() -> None:
    detector = SlowQueryDetector(threshold_ms=20, explain=False)
    # 1 ms at its best: runs of 30-90 ms (awaits that resumed late) are not a slow query
    assert detector.finish(_state(0.001)) == []
    for _ in range(10):
        assert detector.finish(_state(0.090)) == []
        assert detector.finish(_state(0.030)) == []
    # a shape slow every time is reported from its third run
    slow = SlowQueryDetector(threshold_ms=20, explain=False)
    assert slow.finish(_state(0.030)) == []
    assert slow.finish(_state(0.030)) == []
    assert len(slow.finish(_state(0.030))) == 1
    # 25 times the threshold is reported at once
    assert SlowQueryDetector(threshold_ms=20, explain=False).finish(_state(0.4)) == []
    assert len(SlowQueryDetector(threshold_ms=20, explain=False).finish(_state(0.5))) == 1


def test_a_plan_without_a_large_scan_needs_five_times_the_threshold() -> None:
    from fastprof.queries import fingerprint

    key = fingerprint("SELECT id FROM t WHERE a = ?")
    explain.plans[key] = explain.Plan("sqlite", ("SEARCH t USING INDEX ix_t_a (a=?)",))
    lookup = SlowQueryDetector(threshold_ms=20)
    # an index lookup measured at 30 ms, run after run: the app's delay, not the database's
    assert [lookup.finish(_state(0.030)) for _ in range(4)] == [[], [], [], []]
    # at 110 ms even at its fastest, it is reported whatever the plan
    slower = SlowQueryDetector(threshold_ms=20)
    assert [len(slower.finish(_state(0.110))) for _ in range(3)] == [0, 0, 1]
    # a full scan of a large table is reported from the threshold
    explain.plans[key] = explain.Plan(
        "sqlite", ("SCAN t",), (explain.SeqScan("t", 50_000, ("a",)),)
    )
    scan = SlowQueryDetector(threshold_ms=20)
    found = [scan.finish(_state(0.030)) for _ in range(3)][-1]
    assert len(found) == 1 and found[0].evidence["suggested_index"].startswith("CREATE INDEX")


async def test_an_alias_in_the_plan_is_resolved_to_its_table(big_sqlite: Path) -> None:
    app = FastAPI()

    @app.get("/alias")
    def by_alias() -> dict[str, Any]:
        conn = sqlite3.connect(big_sqlite)
        try:
            row = conn.execute(
                "SELECT c.id FROM customer AS c WHERE c.email = ?", ("user199999@example.com",)
            ).fetchone()
        finally:
            conn.close()
        return {"id": row[0]}

    _, findings = await call(app, "/alias", threshold_ms=0.1)
    scan = findings[0].evidence["seq_scan"]
    assert (scan["table"], scan["columns"], scan["rows"]) == ("customer", ["email"], ROWS)
    assert explain.table_aliases("SELECT * FROM a x JOIN b ON b.id = x.id") == {"x": "a"}


def test_no_verdict_while_another_request_takes_the_plan() -> None:
    from fastprof.queries import fingerprint

    key = fingerprint("SELECT id FROM t WHERE a = ?")
    explain.plans[key] = None  # claimed: its EXPLAIN is running in another request
    waiting = SlowQueryDetector(threshold_ms=20)
    assert [waiting.finish(_state(0.030)) for _ in range(4)] == [[], [], [], []]
    explain.plans[key] = explain.Plan(
        "sqlite", ("SCAN t",), (explain.SeqScan("t", 50_000, ("a",)),)
    )
    assert len(waiting.finish(_state(0.030))) == 1  # the plan is in: a large scan
