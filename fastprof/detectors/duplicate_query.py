"""``duplicate_query``: the same read, with the same parameters, run again in one request.

Reads (SELECT, and WITH ... SELECT) are grouped by fingerprint and parameters (a statement
with its literals inlined groups by its text: the fingerprint folds them, the raw SQL differs);
a group of ``threshold`` or more (default 2) is reported, once, at the first repeat - the
line that could have reused the earlier result - with every call site in the evidence.
``SELECT`` without ``FROM`` (``SELECT nextval(...)``, ``SELECT 1`` pings) is left out: such
calls may have side effects or be cheap on purpose. Writes are left out too: running the
same INSERT twice is rarely a mistake this detector could judge.
"""

from __future__ import annotations

from typing import Any

from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, Severity
from fastprof.queries import QueryRecord, params_text, short_sql
from fastprof.queries.base import QueryHooks
from fastprof.record import RequestState


class DuplicateQueryDetector(Detector):
    """Identical reads repeated within a request (see the module docstring)."""

    kind = "duplicate_query"
    needs_queries = True

    def __init__(self, *, threshold: int = 2, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(threshold, int) or threshold < 2:
            raise ValueError(f"duplicate_query threshold must be at least 2, got {threshold!r}")
        self.threshold = threshold
        self._hooks = QueryHooks()

    def start(self) -> None:
        self._hooks.start()

    def stop(self) -> None:
        self._hooks.stop()

    def finish(self, state: RequestState) -> list[Finding]:
        if len(state.queries) < self.threshold:
            return []
        groups: dict[tuple[str, str, str], list[QueryRecord]] = {}
        for record in state.queries:
            if record.many or record.verb != "select":
                continue
            fingerprint = record.fingerprint
            if " from " not in fingerprint:
                continue
            key = (fingerprint, record.sql, record.params_key)
            groups.setdefault(key, []).append(record)
        # One finding per statement shape and line of the first repeat: a loop that repeats
        # several parameter sets is one problem, not one per parameter set.
        merged: dict[tuple[str, Location | None], list[list[QueryRecord]]] = {}
        for (fingerprint, _, _), records in groups.items():
            if len(records) >= self.threshold:
                merged.setdefault((fingerprint, records[1].location), []).append(records)
        return [self._finding(state.route, sets) for sets in merged.values()]

    def _finding(self, route: str, sets: list[list[QueryRecord]]) -> Finding:
        records = [r for same in sets for r in same]
        first = records[0]
        count = len(records)
        total = sum(r.duration for r in records)
        wasted = total - sum(same[0].duration for same in sets)
        sites: list[str] = []
        for record in records:
            site = str(record.location) if record.location else "(no user code on the stack)"
            if site not in sites:
                sites.append(site)
        evidence: dict[str, Any] = {
            "count": count,
            "repeats": count - len(sets),
            "total_ms": round(total * 1000, 3),
            "wasted_ms": round(wasted * 1000, 3),
            "sql": short_sql(first.sql),
            "params": params_text(first.params),
            "driver": first.driver,
            "call_sites": sites[:10],
        }
        if len(sets) > 1:
            evidence["parameter_sets"] = len(sets)
        severity: Severity = "medium" if count - len(sets) >= 4 or wasted >= 0.05 else "low"
        same = f"{len(sets)} parameter sets each" if len(sets) > 1 else "the same parameters"
        return Finding(
            route=route or None,
            kind=self.kind,
            severity=severity,
            title=f"Duplicate query: the same SELECT with {same} ran more than once "
            f"({count} runs, {count - len(sets)} of them repeats)",
            evidence=evidence,
            location=sets[0][1].location or first.location,
            advice=_advice(first),
        )


def _advice(first: QueryRecord) -> str:
    text = (
        "This request asked the database the same question more than once. Run the query "
        "once and reuse the result: pass it to the code that needs it, or cache it for the "
        "request (a FastAPI dependency is evaluated once per request however many others "
        "depend on it)."
    )
    if first.driver == "sqlalchemy":
        text += (
            " With the ORM, session.get(Model, id) answers a repeated primary-key load from "
            "the session's identity map without SQL."
        )
    return text + (
        " If the data changes rarely, cache it across requests too: in process "
        "(functools.lru_cache, cachetools.TTLCache) or in Redis across workers.\n"
        "Source: guide 001 (FastAPI Performance Tuning: caching strategies); guide 003 "
        "(Optimizing Performance in FastAPI Applications: caching); guide 004 "
        "(Performance Optimization for High-Throughput FastAPI Applications: caching "
        "strategies)."
    )
