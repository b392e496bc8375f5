"""``connection_per_request``: a request that opens database connections instead of reusing them.

Reported (one finding per call site):

* a driver's own connect inside a request - ``sqlite3.connect``, ``await aiosqlite.connect``,
  ``await asyncpg.connect``;
* a pool or engine built inside a request - ``asyncpg.create_pool``, SQLAlchemy's
  ``create_engine``/``create_async_engine`` (its pool starts empty and its statement cache
  cold, every time);
* a pool that connects on every checkout - SQLAlchemy's ``NullPool``.

An in-memory SQLite database (``sqlite3.connect(":memory:")``) is scratch space that lives
only as long as its connection; opening one per request is not reported.

A pool opening a connection it will keep (the first checkouts of a ``QueuePool``, an asyncpg
pool refilling itself) is normal and not reported. Nor is a connection (or asyncpg pool) that
is still open and referenced when the request ends: it was opened lazily, on the first
request, and kept for the next ones. An engine cannot be judged that way (engines sit in
reference cycles, and nothing marks one disposed), so an engine created lazily on the first
request is reported on that request.

Severity: ``high`` for a network database (PostgreSQL: a TCP connection, authentication and
a backend process each time); ``medium`` for an engine built per request, for aiosqlite (a
thread is started per connection) and for any SQLite case whose connects took 5 ms or more;
``low`` for a plain ``sqlite3.connect`` (cheap: a file open).
"""

from __future__ import annotations

from typing import Any

from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, Severity
from fastprof.queries import ConnectRecord
from fastprof.queries.base import QueryHooks
from fastprof.record import RequestState

_REPORTED = ("connect", "engine", "engine_connect", "pool")


class ConnectionPerRequestDetector(Detector):
    """New connections, pools or engines per request (see the module docstring)."""

    kind = "connection_per_request"
    needs_queries = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._hooks = QueryHooks()

    def start(self) -> None:
        self._hooks.start()

    def stop(self) -> None:
        self._hooks.stop()

    def finish(self, state: RequestState) -> list[Finding]:
        if not state.connects:
            return []
        groups: dict[Location | None, list[ConnectRecord]] = {}
        for record in state.connects:
            reported = record.how in _REPORTED or (
                record.how == "pool_connect" and not record.pooled
            )
            if reported and not record.kept() and not _scratch(record):
                groups.setdefault(record.location, []).append(record)
        return [self._finding(state.route, loc, records) for loc, records in groups.items()]

    def _finding(
        self, route: str, location: Location | None, records: list[ConnectRecord]
    ) -> Finding:
        first = records[0]
        total = sum(r.duration for r in records)
        network = _network(first)
        engines = sum(1 for r in records if r.how == "engine")
        pools = sum(1 for r in records if r.how == "pool")
        connects = sum(r.connections for r in records)
        severity: Severity
        if network:
            severity = "high"
        elif engines or first.driver == "aiosqlite" or total >= 0.005:
            severity = "medium"
        else:
            severity = "low"
        evidence: dict[str, Any] = {
            "connects": connects,
            "connect_ms": round(total * 1000, 3),
            "driver": first.driver,
            "how": first.how,
        }
        if engines:
            evidence["engines_created"] = engines
        if pools:
            evidence["pools_created"] = pools
        if first.detail:
            evidence["detail"] = first.detail
        times = len(records) if not (engines or pools) else engines + pools
        count = f" ({times} times)" if times > 1 else ""
        title = {
            "engine": f"A SQLAlchemy engine is created inside the request{count}: "
            "engines and their pools belong at startup",
            "pool": f"A connection pool is created inside the request{count}: "
            "pools belong at startup",
            "pool_connect": f"NullPool opens a new database connection for this request{count}",
        }.get(
            first.how,
            f"A new {first.driver} connection is opened inside the request{count} "
            "instead of taken from a pool",
        )
        return Finding(
            route=route or None,
            kind=self.kind,
            severity=severity,
            title=title,
            evidence=evidence,
            location=location,
            advice=_advice(first, network),
        )


def _scratch(record: ConnectRecord) -> bool:
    """An in-memory SQLite database: scratch space that lives and dies with its connection,
    so opening one per request is the point, not a missed pool."""
    if record.driver not in ("sqlite3", "aiosqlite"):
        return False
    detail = record.detail
    return (
        detail in (":memory:", "") or "mode=memory" in detail or detail.startswith("file::memory:")
    )


def _network(record: ConnectRecord) -> bool:
    if record.driver == "asyncpg":
        return True
    return record.driver == "sqlalchemy" and "(sqlite" not in record.detail


def _advice(first: ConnectRecord, network: bool) -> str:
    pool_rule = (
        "\nSource: guide 004 (Performance Optimization for High-Throughput FastAPI "
        "Applications: connection pooling)"
    )
    if first.driver == "asyncpg":
        created = (
            "A pool created per request opens its min_size connections every time. "
            if first.how == "pool"
            else ""
        )
        return (
            f"{created}Create one asyncpg pool at startup, in the app's lifespan "
            "(pool = await asyncpg.create_pool(dsn, min_size=5, max_size=20); close it at "
            "shutdown), and take a connection per request with "
            "'async with pool.acquire() as conn:'."
            + pool_rule
            + "; guide 001 (FastAPI Performance Tuning: connection pooling); guide 003 "
            "(Optimizing Performance in FastAPI Applications: use connection pooling)."
        )
    if first.driver == "sqlalchemy":
        sizing = (
            "Size its pool for the app's concurrency, e.g. "
            "create_engine(URL, pool_size=20, max_overflow=10)." + pool_rule + "."
        )
        if first.how == "engine":
            return (
                "Create the engine once, at import or in the lifespan, and share it (open a "
                "Session per request from one sessionmaker): an engine built per request "
                "starts with no pooled connections and a cold statement cache. " + sizing
            )
        return (
            "This engine uses NullPool, which opens a new database connection for every "
            "checkout. Use the default pool (QueuePool; AsyncAdaptedQueuePool for "
            "create_async_engine) unless an external pooler such as PgBouncer is the reason "
            "for NullPool. " + sizing
        )
    thread = ""
    if first.driver == "aiosqlite":
        thread = " aiosqlite also starts a thread for every connection."

    return (
        f"Each request opens its own SQLite connection.{thread} Open it once at startup (in "
        "the lifespan, kept on app.state) and share it - a sqlite3 connection used from "
        "def endpoints' worker threads needs check_same_thread=False and its writes "
        "serialised - or go through a pooled engine (SQLAlchemy's create_engine keeps "
        "SQLite connections in a pool)." + pool_rule + "."
    )
