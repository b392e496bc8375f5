"""``n_plus_one``: one query per item of a list, from the same line, instead of one query.

A request's queries are grouped by (fingerprint, call site): the same statement shape issued
from the same line of user code. A group is an N+1 when it ran at least ``threshold`` times
(default 5) with at least two different parameter sets - all-identical repeats are
``duplicate_query``'s business - and took at least ``min_total_ms`` (default 0: SQLite answers
in microseconds, so time says little; Sentry's detector asks for 5 repeats and 50 ms on real
databases). ``executemany`` and scripts are one call and never count; statements that do not
read or write rows (BEGIN, SET, PRAGMA...) are left out.

The fix depends on what issued the queries: an ORM lazy load names its relationship
(``selectinload(Author.books)``); ``session.get`` in a loop, one ``IN`` query; a hand-written
SELECT loop, ``IN (...)``/``= ANY($1)`` or a JOIN; an INSERT/UPDATE loop, ``executemany``.
"""

from __future__ import annotations

import linecache
import re
from typing import Any

from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, Severity
from fastprof.queries import DATA_VERBS, QueryRecord, params_text, short_sql
from fastprof.queries.base import QueryHooks
from fastprof.record import RequestState

_WHERE_COLUMN = re.compile(r"\bwhere\s+(?:\?\s*=\s*)?([\w.\"]+)\s*(?:=\s*\?|in\s*\(\?\))", re.I)
_REVERSED_WHERE = re.compile(r"\bwhere\s+\?\s*=\s*([\w.\"]+)", re.I)
_TABLE = re.compile(r"\b(?:from|into|update)\s+([\w.\"]+)", re.I)


class NPlusOneDetector(Detector):
    """Repeated queries of one shape from one call site (see the module docstring)."""

    kind = "n_plus_one"
    needs_queries = True

    def __init__(self, *, threshold: int = 5, min_total_ms: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(threshold, int) or threshold < 2:
            raise ValueError(f"n_plus_one threshold must be at least 2, got {threshold!r}")
        if not isinstance(min_total_ms, int | float) or min_total_ms < 0:
            raise ValueError(f"n_plus_one min_total_ms must be >= 0, got {min_total_ms!r}")
        self.threshold = threshold
        self.min_total = min_total_ms / 1000
        self._hooks = QueryHooks()

    def start(self) -> None:
        self._hooks.start()

    def stop(self) -> None:
        self._hooks.stop()

    def finish(self, state: RequestState) -> list[Finding]:
        if len(state.queries) < self.threshold:
            return []
        groups: dict[tuple[str, Location | None], list[QueryRecord]] = {}
        for record in state.queries:
            if record.many or record.verb not in DATA_VERBS:
                continue
            groups.setdefault((record.fingerprint, record.location), []).append(record)
        findings = []
        for (fingerprint, location), records in groups.items():
            if len(records) < self.threshold:
                continue
            total = sum(r.duration for r in records)
            if total < self.min_total:
                continue
            variants = {(r.sql, r.params_key) for r in records}
            if len(variants) < 2:
                continue
            findings.append(
                self._finding(state.route, fingerprint, location, records, total, len(variants))
            )
        return findings

    def _finding(
        self,
        route: str,
        fingerprint: str,
        location: Location | None,
        records: list[QueryRecord],
        total: float,
        variants: int,
    ) -> Finding:
        first = records[0]
        count = len(records)
        relationship = first.orm_value("lazy_load")
        evidence: dict[str, Any] = {
            "count": count,
            "total_ms": round(total * 1000, 3),
            "sql": short_sql(first.sql),
            "fingerprint": short_sql(fingerprint),
            "driver": first.driver,
            "distinct_params": variants,
            "params_examples": [params_text(r.params) for r in records[:3]],
        }
        if relationship is not None:
            evidence["relationship"] = relationship
        during = first.orm_value("during")
        if during is not None:
            evidence["during"] = during
        what = f"lazy load of {relationship}" if relationship else f"{first.verb.upper()} query"
        severity: Severity = "high" if count >= 20 or total >= 0.05 else "medium"
        return Finding(
            route=route or None,
            kind=self.kind,
            severity=severity,
            title=f"N+1 queries: the same {what} ran {count} times",
            evidence=evidence,
            location=location,
            advice=_advice(first, fingerprint, location),
        )


def _advice(first: QueryRecord, fingerprint: str, location: Location | None) -> str:
    tail = "\nSource: guide 001 (FastAPI Performance Tuning: common pitfalls, N+1 query problem)"
    relationship = first.orm_value("lazy_load")
    if relationship is not None:
        model = relationship.partition(".")[0]
        if first.orm_value("direction") == "MANYTOONE":
            option = f"joinedload({relationship})"
            other = f"selectinload({relationship})"
            how = "in the same query (a JOIN)"
        else:
            option = f"selectinload({relationship})"
            other = f"joinedload({relationship})"
            how = "with one more query for all of them (WHERE ... IN)"
        text = (
            f"Each {model} loads {relationship} on first access, one query per object. "
            f"Load the relationship {how} where the {model} rows are fetched: "
            f"select({model}).options({option}) ({other} also works)."
        )
        if first.orm_value("during") == "serialization":
            text += (
                " These loads ran while the response was serialised (the response model reads "
                f"{relationship.partition('.')[2]}): add the option to the query at this "
                'line, or declare the relationship with lazy="raise" to find every such '
                "access."
            )
        return text + tail + "; SQLAlchemy docs: relationship loading techniques."
    verb = first.verb
    table = _table(fingerprint)
    if verb in ("insert", "update", "delete", "replace"):
        if first.driver == "sqlalchemy":
            fix = (
                "pass the list of parameter dicts to one execute() - "
                f"session.execute({verb}(...), rows) - which SQLAlchemy sends as executemany"
            )
        else:
            fix = (
                "send them in one call with executemany(sql, rows)"
                + (" (asyncpg pipelines it)" if first.driver == "asyncpg" else "")
                + " or one multi-row statement"
            )
        return f"One {verb.upper()} per item: {fix}." + tail + "."
    column = _where_column(fingerprint)
    line = _source_line(location)
    if first.driver == "sqlalchemy" and ".get(" in line:
        return (
            f"session.get() in a loop runs one SELECT per id on {table or 'the table'}: load "
            "them in one query, select(Model).where(Model.id.in_(ids)); the session's identity "
            "map then answers later session.get() calls without SQL." + tail + "."
        )
    if first.driver == "asyncpg":
        batch = f"WHERE {column or 'key'} = ANY($1::int[]) with the list of keys"
    else:
        batch = f"WHERE {column or 'key'} IN (...) with all the keys"
    return (
        f"One SELECT per item{f' on {table}' if table else ''}: fetch all rows at once "
        f"({batch}) and match them up in Python, or JOIN {table or 'the table'} into the "
        "query that produced the items."
        + tail
        + "; guide 004 (Performance Optimization for High-Throughput FastAPI Applications: "
        "query optimization)."
    )


def _where_column(fingerprint: str) -> str | None:
    match = _WHERE_COLUMN.search(fingerprint) or _REVERSED_WHERE.search(fingerprint)
    if match is None:
        return None
    column = match.group(1)
    return column if column != "?" else None


def _table(fingerprint: str) -> str | None:
    match = _TABLE.search(fingerprint)
    return match.group(1).strip('"') if match else None


def _source_line(location: Location | None) -> str:
    if location is None:
        return ""
    return linecache.getline(location.file, location.line)
