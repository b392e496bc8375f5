"""Query plans for slow queries: ``EXPLAIN`` run by the hooks, once per statement shape.

While a slow_query detector watches (:func:`watch`), a hook that has just recorded a query
slower than the lowest watching threshold (:data:`over`) asks the database for its plan, on
the same connection, right after the query: PostgreSQL ``EXPLAIN (FORMAT JSON)``, SQLite
``EXPLAIN QUERY PLAN``. Never ``ANALYZE``: the statement is planned, not run again, so a
write is never repeated. On PostgreSQL inside a transaction the ``EXPLAIN`` runs in a
savepoint, so that a failure cannot abort the app's transaction. The plan is kept per
fingerprint (:data:`plans`), so each statement shape is explained once per process; the
detector reads it when the request ends.

Why on the app's connection, in the request: the parameters and the session (search path,
temporary tables, the transaction's own writes) are those the query ran with, and no
connection of the app's pool is taken for it. The cost - one more round trip, once per
shape - falls on a request that was already slower than the threshold.

From a plan: the sequential scans, the table's size (PostgreSQL ``pg_class.reltuples``;
SQLite ``max(rowid)``, an upper bound read from the rowid b-tree without a scan), and the
columns the scan filters on (PostgreSQL's ``Filter``; for SQLite the ``WHERE`` clause's
columns that belong to the table).

Databases: PostgreSQL (asyncpg; SQLAlchemy on asyncpg or psycopg) and SQLite (sqlite3;
SQLAlchemy on sqlite3 or aiosqlite). Others (MySQL, MariaDB), and aiosqlite used directly, are
timed and reported without a plan.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from fastprof.queries import fingerprint, verb

if TYPE_CHECKING:
    from fastprof.record import RequestState

#: Queries at least this long (seconds) are explained: the lowest threshold of the watching
#: detectors, infinity while none watches (so the hooks' test is one comparison).
over = math.inf
_thresholds: list[float] = []
_lock = threading.Lock()
_clock = time.perf_counter

#: Verbs worth a plan (a plain INSERT ... VALUES has no scan to show).
EXPLAINABLE = frozenset({"select", "update", "delete"})
SAVEPOINT = "fastprof_explain"


@dataclass(frozen=True, slots=True)
class SeqScan:
    """A sequential (full) scan of a table, in a plan."""

    table: str
    #: Rows in the table (an estimate; None: unknown).
    rows: int | None
    #: Columns the scan filters on: the candidates for an index.
    columns: tuple[str, ...]
    #: The scan's filter as the database printed it ("" for SQLite).
    filter: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows": self.rows,
            "columns": list(self.columns),
            "filter": self.filter,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """What the database said about one statement shape."""

    database: str
    #: The plan, one node per line, indented ("Seq Scan on users  (filter: ...) rows=1").
    lines: tuple[str, ...] = ()
    scans: tuple[SeqScan, ...] = ()
    explain_ms: float = 0.0
    #: Why there is no plan ("" when there is one).
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "database": self.database,
            "plan": list(self.lines),
            "seq_scans": [s.to_dict() for s in self.scans],
            "explain_ms": round(self.explain_ms, 2),
        }
        if self.error:
            found["error"] = self.error
        return found


#: fingerprint -> its plan (None while it is being explained).
plans: dict[str, Plan | None] = {}


def watch(threshold: float) -> None:
    """Explain queries of at least ``threshold`` seconds (counted: unwatch with the same value)."""
    global over
    with _lock:
        _thresholds.append(threshold)
        over = min(_thresholds)


def unwatch(threshold: float) -> None:
    global over
    with _lock:
        with contextlib.suppress(ValueError):
            _thresholds.remove(threshold)
        over = min(_thresholds) if _thresholds else math.inf
        if not _thresholds:
            plans.clear()


def plan_of(sql: str) -> Plan | None:
    return plans.get(fingerprint(sql))


def pending(sql: str) -> bool:
    """Another request is taking this shape's plan right now."""
    key = fingerprint(sql)
    return key in plans and plans[key] is None


def claim(sql: str) -> str | None:
    """The statement's fingerprint if it should be explained now (and nobody else does)."""
    if verb(sql) not in EXPLAINABLE:
        return None
    key = fingerprint(sql)
    with _lock:
        if key in plans:
            return None
        if len(plans) > 2000:
            plans.clear()
        plans[key] = None
    return key


@contextlib.contextmanager
def unrecorded(state: RequestState) -> Iterator[None]:
    """The explain's own statements are not the app's: drop what the hooks record meanwhile."""
    count = len(state.queries)
    try:
        yield
    finally:
        del state.queries[count:]


# --- running EXPLAIN -----------------------------------------------------------------------


def explain_dbapi(
    key: str,
    database: str,
    dbapi_connection: Any,
    sql: str,
    params: Any,
    *,
    in_transaction: bool,
) -> Plan:
    """Explain on a DBAPI connection (sqlite3, psycopg, or SQLAlchemy's adapted async drivers,
    which block through the greenlet they run in). Stored under ``key``; never raises."""
    started = _clock()
    try:
        if database == "postgresql":
            plan = _postgres_dbapi(dbapi_connection, sql, params, in_transaction)
        elif database == "sqlite":
            plan = _sqlite_dbapi(dbapi_connection, sql, params)
        else:
            plan = Plan(database, error=f"no EXPLAIN support for {database}")
    except Exception as error:
        plan = Plan(database, error=f"EXPLAIN failed: {type(error).__name__}: {error}"[:300])
    return _store(key, plan, started)


async def explain_asyncpg(key: str, connection: Any, sql: str, args: tuple[Any, ...]) -> Plan:
    """Explain on an asyncpg connection (in a savepoint inside a transaction). Never raises."""
    started = _clock()
    try:
        savepoint = connection.transaction() if connection.is_in_transaction() else None
        async with savepoint or contextlib.nullcontext():
            document = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
            lines, scans = parse_postgres(document)
            names = sorted({s.table for s in scans})
            sizes = {}
            if names:
                rows = await connection.fetch(_PG_SIZES_PARAM, names)
                sizes = {r[0]: r[1] for r in rows}
        plan = Plan("postgresql", lines, _sized(scans, sizes))
    except Exception as error:
        plan = Plan("postgresql", error=f"EXPLAIN failed: {type(error).__name__}: {error}"[:300])
    return _store(key, plan, started)


def _store(key: str, plan: Plan, started: float) -> Plan:
    plan = replace(plan, explain_ms=(_clock() - started) * 1000)
    plans[key] = plan
    return plan


_PG_SIZES_PARAM = (
    "SELECT relname::text, reltuples::bigint FROM pg_class "
    "WHERE oid IN (SELECT to_regclass(n) FROM unnest($1::text[]) AS n)"
)


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _postgres_dbapi(connection: Any, sql: str, params: Any, in_transaction: bool) -> Plan:
    cursor = connection.cursor()
    try:
        if in_transaction:
            cursor.execute(f"SAVEPOINT {SAVEPOINT}")
        try:
            if params:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            else:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            document = cursor.fetchall()[0][0]
            lines, scans = parse_postgres(document)
            sizes = {}
            names = sorted({s.table for s in scans})
            if names:
                array = ", ".join(_pg_literal(n) for n in names)
                cursor.execute(
                    "SELECT relname::text, reltuples::bigint FROM pg_class WHERE oid IN "
                    f"(SELECT to_regclass(n) FROM unnest(ARRAY[{array}]::text[]) AS n)"
                )
                sizes = {r[0]: r[1] for r in cursor.fetchall()}
        except Exception:
            if in_transaction:
                cursor.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
            raise
        finally:
            if in_transaction:
                cursor.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
    finally:
        cursor.close()
    return Plan("postgresql", lines, _sized(scans, sizes))


def _sqlite_dbapi(connection: Any, sql: str, params: Any) -> Plan:
    cursor = connection.cursor()
    try:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params if params is not None else ())
        rows = [tuple(r) for r in cursor.fetchall()]
        lines, names = parse_sqlite(rows)
        scans = []
        where = where_columns(sql)
        aliases = table_aliases(sql)
        for name in names:
            # the plan names a table by its alias (SCAN a); a subquery or CTE is no table
            table = aliases.get(name.lower(), name)
            cursor.execute(f'PRAGMA table_info("{table}")')
            columns = {r[1].lower() for r in cursor.fetchall()}
            if not columns:
                continue
            try:
                cursor.execute(f'SELECT max(rowid) FROM "{table}"')
                size = cursor.fetchall()[0][0]
            except Exception:  # a WITHOUT ROWID table
                size = None
            scans.append(SeqScan(table, size, tuple(c for c in where if c.lower() in columns)))
    finally:
        cursor.close()
    return Plan("sqlite", lines, tuple(scans))


# --- reading plans -------------------------------------------------------------------------

# A column compared in a PostgreSQL filter: "(email = ...", "((email)::text = ...",
# "(lower(email) = ...", "(t.score > ...".
_PG_FILTER_COLUMN = re.compile(
    r"\((?:[A-Za-z_]\w*\.)?\"?([A-Za-z_]\w*)\"?\)?(?:::[\w ]+?(?:\[\])?)?\)?\s*"
    r"(?:=|<>|!=|<=|>=|<|>|~~\*?|!~~\*?|IS\b|IN\b|= ANY)"
)


def filter_columns(text: str) -> tuple[str, ...]:
    """Columns compared in a PostgreSQL ``Filter`` expression, in order, without repeats."""
    found: list[str] = []
    for name in _PG_FILTER_COLUMN.findall(text or ""):
        if name.lower() not in ("and", "or", "not", "select") and name not in found:
            found.append(name)
    return tuple(found)


def parse_postgres(document: Any) -> tuple[tuple[str, ...], tuple[SeqScan, ...]]:
    """Lines and sequential scans of an ``EXPLAIN (FORMAT JSON)`` result (text or decoded)."""
    if isinstance(document, str | bytes):
        document = orjson.loads(document)
    root = document[0]["Plan"]
    lines: list[str] = []
    scans: list[SeqScan] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        kind = node.get("Node Type", "?")
        relation = node.get("Relation Name")
        text = "  " * depth + kind + (f" on {relation}" if relation else "")
        if node.get("Index Name"):
            text += f" using {node['Index Name']}"
        condition = node.get("Filter") or node.get("Index Cond")
        if condition:
            text += f"  ({'filter' if node.get('Filter') else 'index cond'}: {condition})"
        text += f"  rows={node.get('Plan Rows', '?')} cost={node.get('Total Cost', '?')}"
        lines.append(text)
        if kind in ("Seq Scan", "Parallel Seq Scan") and relation:
            filter_text = node.get("Filter", "")
            scans.append(SeqScan(relation, None, filter_columns(filter_text), filter_text))
        for child in node.get("Plans", ()):
            walk(child, depth + 1)

    walk(root, 0)
    return tuple(lines), tuple(scans)


_SQLITE_SCAN = re.compile(r"^SCAN (?:TABLE )?\"?([\w.]+)\"?(?: AS \w+)?$")


def parse_sqlite(rows: list[tuple[Any, ...]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Lines of ``EXPLAIN QUERY PLAN`` rows ``(id, parent, notused, detail)``, and the tables
    scanned in full (``SCAN t``; ``SCAN t USING INDEX`` walks an index, so it is not one)."""
    depth: dict[int, int] = {0: -1}
    lines = []
    tables: list[str] = []
    for row in rows:
        node, parent, detail = row[0], row[1], str(row[-1])
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
        match = _SQLITE_SCAN.match(detail)
        if match and match.group(1) not in tables:
            tables.append(match.group(1))
    return tuple(lines), tuple(tables)


_WHERE = re.compile(r"\bwhere\b(.*?)(?:\border by\b|\bgroup by\b|\blimit\b|\breturning\b|$)")
_WHERE_COLUMN = re.compile(
    r"(?<![\w.])(?:\"?\w+\"?\.)?\"?([a-z_]\w*)\"?\s*(?:=|<>|!=|<=|>=|<|>|\blike\b|\bin\b|"
    r"\bbetween\b|\bis\b)"
)


def where_columns(sql: str) -> tuple[str, ...]:
    """Columns the ``WHERE`` clause of ``sql`` compares (lower case, in order)."""
    match = _WHERE.search(fingerprint(sql))
    if match is None:
        return ()
    found: list[str] = []
    for name in _WHERE_COLUMN.findall(match.group(1)):
        if name not in ("and", "or", "not") and name not in found:
            found.append(name)
    return tuple(found)


_FROM_TABLE = re.compile(
    r"\b(?:from|join)\s+\"?([a-z_][\w]*)\"?(?:\s+(?:as\s+)?\"?([a-z_]\w*)\"?)?", re.I
)
_NOT_ALIASES = frozenset(
    {"where", "join", "left", "right", "inner", "outer", "cross", "on", "group", "order",
     "limit", "using", "natural", "full", "union", "having", "window"}
)  # fmt: skip


def table_aliases(sql: str) -> dict[str, str]:
    """``alias -> table`` for the tables of ``FROM``/``JOIN`` clauses (lower case)."""
    found: dict[str, str] = {}
    for table, alias in _FROM_TABLE.findall(fingerprint(sql)):
        if alias and alias.lower() not in _NOT_ALIASES:
            found[alias.lower()] = table
    return found


def _sized(scans: tuple[SeqScan, ...], sizes: dict[str, int]) -> tuple[SeqScan, ...]:
    sized = []
    for scan in scans:
        rows = sizes.get(scan.table)
        # reltuples is -1 for a table never vacuumed or analyzed: unknown
        sized.append(
            SeqScan(
                scan.table,
                rows if rows is not None and rows >= 0 else None,
                scan.columns,
                scan.filter,
            )
        )
    return tuple(sized)


_SELECT_STAR = re.compile(r"^\s*select\s+(?:distinct\s+)?(?:\w+\.)?\*\s*(?:,|from\b)", re.I)


def selects_star(sql: str) -> bool:
    """``SELECT *`` (or ``SELECT t.*``): every column, whatever the route needs."""
    return bool(_SELECT_STAR.match(fingerprint(sql)))


def suggested_index(database: str, scan: SeqScan) -> str | None:
    if not scan.columns:
        return None
    columns = ", ".join(scan.columns[:2])
    name = f"ix_{scan.table}_{'_'.join(scan.columns[:2])}"
    if database == "postgresql":
        return f"CREATE INDEX CONCURRENTLY {name} ON {scan.table} ({columns})"
    return f"CREATE INDEX {name} ON {scan.table} ({columns})"
