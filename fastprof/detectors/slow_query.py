"""``slow_query``: a query over ``threshold_ms`` (default 20 ms, PgHero's line for a slow
query), with the database's plan for it.

The hooks ask the database for the plan of a query as soon as it ran over the threshold, once
per statement shape (``fastprof/queries/explain.py``: PostgreSQL ``EXPLAIN (FORMAT JSON)``,
SQLite ``EXPLAIN QUERY PLAN``; never ``ANALYZE``). From the plan the finding names a
sequential scan of a table of at least ``large_table_rows`` rows (default 10,000) and the
columns it filters on - with the ``CREATE INDEX`` that would serve it - and it notes a
``SELECT *``, which reads every column whatever the route needs. One finding per statement
shape and request, at the line that ran the slowest of them. ``executemany`` and scripts are
left out: their time is that of many statements, none of which is known to be slow.

A statement shape is judged on its recent runs, not on one: a run over the threshold is
reported when the *fastest* of the shape's last 256 runs (this one included) was over it too,
and there have been at least 3 runs - or at once, for a run of 25x the threshold. The time is
measured in the app, and under concurrency an ``await`` resumes late: an async driver's query
the database answered in 5 ms measured 20-120 ms while eight requests shared the loop in a
demo scan, run after run, so even the median misleads. The fastest run is the one least
disturbed; a statement the database is slow to answer is slow even then.

The plan weighs in too: when it shows no full scan of a large table (an index lookup, a small
table), the time is more likely the app's than the database's, and the shape is reported only
from 5x the threshold at its fastest.

A garbage-collector pause that overlaps a query is left out of its time
(``fastprof/_pauses.py``): a full collection stops the process for tens of milliseconds, and
the query is not slower for it.

``explain=False`` reports slow queries without asking for plans (no extra statement ever
reaches the database).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from fastprof import _pauses
from fastprof.advice import advice
from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Severity
from fastprof.queries import DATA_VERBS, QueryRecord, explain, params_text, short_sql
from fastprof.queries.base import QueryHooks
from fastprof.record import RequestState

#: Judge a statement shape on the fastest of its last RUNS runs, once it has MIN_RUNS; a run
#: of AT_ONCE x the threshold is reported whatever came before.
RUNS = 256
MIN_RUNS = 3
AT_ONCE = 25
#: With a plan that shows no large scan, the fastest run must reach this x the threshold.
PLAN_CLEARS = 5


class SlowQueryDetector(Detector):
    kind = "slow_query"
    needs_queries = True

    def __init__(
        self,
        *,
        threshold_ms: float = 20.0,
        large_table_rows: int = 10_000,
        explain: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not isinstance(threshold_ms, int | float) or threshold_ms <= 0:
            raise ValueError(
                f"slow_query threshold_ms={threshold_ms!r} is not valid; "
                "use a number of milliseconds > 0"
            )
        if not isinstance(large_table_rows, int) or large_table_rows < 0:
            raise ValueError(
                f"slow_query large_table_rows={large_table_rows!r} is not valid; "
                "use a whole number of rows >= 0"
            )
        if not isinstance(explain, bool):
            raise ValueError(f"slow_query explain={explain!r} is not valid; use True or False")
        self.threshold = threshold_ms / 1000
        self.large_table_rows = large_table_rows
        self.explain = explain
        self._hooks = QueryHooks()
        self._started = False
        #: fingerprint -> the last runs' durations (seconds, collector pauses left out)
        self._runs: dict[str, deque[float]] = {}

    def start(self) -> None:
        if not self._started:
            self._started = True
            _pauses.acquire()
            self._hooks.start()
            if self.explain:
                explain.watch(self.threshold)

    def stop(self) -> None:
        if self._started:
            self._started = False
            if self.explain:
                explain.unwatch(self.threshold)
            self._hooks.stop()
            _pauses.release()

    def finish(self, state: RequestState) -> list[Finding]:
        slow: dict[str, list[tuple[float, QueryRecord]]] = {}
        for record in state.queries:
            # executemany/scripts: one call for many statements, no single one to call slow
            if record.many or record.verb not in DATA_VERBS:
                continue
            took = record.duration
            if took >= self.threshold:
                # a collector pause stalls the whole process, not the database
                took -= _pauses.overlap(record.started, record.started + record.duration)
            runs = self._runs.get(record.fingerprint)
            if runs is None:
                if len(self._runs) > 2000:
                    self._runs.clear()
                runs = self._runs[record.fingerprint] = deque(maxlen=RUNS)
            runs.append(took)
            if took >= self.threshold and self._usually_slow(took, runs):
                slow.setdefault(record.fingerprint, []).append((took, record))
        return [
            self._finding(state, timed)
            for fingerprint, timed in slow.items()
            if not self._plan_clears(timed, min(self._runs[fingerprint]))
        ]

    def _plan_clears(self, timed: list[tuple[float, QueryRecord]], fastest: float) -> bool:
        """The database's plan shows no large scan, and the time could be the app's own.

        An index lookup that measured 22 ms was more likely kept waiting by the app (its loop,
        the GIL, a busy machine) than by the database: with a plan like that, the shape needs
        PLAN_CLEARS x the threshold at its fastest to be reported.
        """
        if not self.explain or fastest >= PLAN_CLEARS * self.threshold:
            return False
        if max(t for t, _ in timed) >= AT_ONCE * self.threshold:
            return False
        sql = timed[0][1].sql
        if explain.pending(sql):
            # the request that ran it first is asking for the plan: judge when it is known
            return True
        plan = explain.plan_of(sql)
        if plan is None or plan.error or not plan.lines:
            return False
        return not any(s.rows is None or s.rows >= self.large_table_rows for s in plan.scans)

    def _usually_slow(self, took: float, runs: deque[float]) -> bool:
        if took >= AT_ONCE * self.threshold:
            return True
        return len(runs) >= MIN_RUNS and min(runs) >= self.threshold

    def _finding(self, state: RequestState, timed: list[tuple[float, QueryRecord]]) -> Finding:
        took, worst = max(timed, key=lambda t: t[0])
        records = [r for _, r in timed]
        plan = explain.plan_of(worst.sql) if self.explain else None
        scans = [
            s
            for s in (plan.scans if plan is not None else ())
            if s.rows is None or s.rows >= self.large_table_rows
        ]
        scan = max(scans, key=lambda s: s.rows or 0) if scans else None
        database = plan.database if plan is not None else ""
        index = explain.suggested_index(database, scan) if scan is not None else None
        star = explain.selects_star(worst.sql)
        duration_ms = took * 1000
        evidence: dict[str, Any] = {
            "sql": short_sql(worst.sql),
            "params": params_text(worst.params),
            "query_ms": round(duration_ms, 2),
            "gc_pause_ms": round((worst.duration - took) * 1000, 2),
            "threshold_ms": round(self.threshold * 1000, 2),
            "count": len(records),
            "driver": worst.driver,
            "select_star": star,
        }
        if plan is not None:
            evidence["plan"] = plan.to_dict()
        if scan is not None:
            evidence["seq_scan"] = scan.to_dict()
        if index is not None:
            evidence["suggested_index"] = index
        rows_text = (
            f"about {scan.rows:,} rows" if scan and scan.rows is not None else "size unknown"
        )
        if scan is not None and scan.columns:
            title = (
                f"Slow query ({duration_ms:.0f} ms): full scan of {scan.table} "
                f"({rows_text}) filtering on {', '.join(scan.columns)}"
            )
        elif scan is not None:
            title = f"Slow query ({duration_ms:.0f} ms): reads all of {scan.table} ({rows_text})"
        else:
            title = f"Slow query ({duration_ms:.0f} ms): {short_sql(worst.sql, 80)}"
        big = duration_ms >= 10 * self.threshold * 1000 or (
            scan is not None and (scan.rows or 0) >= 10 * self.large_table_rows
        )
        severity: Severity = "high" if big else "medium"
        plan_text = (
            "; ".join(line.strip() for line in plan.lines[:4])
            if plan is not None and plan.lines
            else (plan.error if plan is not None and plan.error else "no plan was taken")
        )
        return Finding(
            kind=self.kind,
            severity=severity,
            title=title,
            evidence=evidence,
            location=worst.location,
            advice=advice(
                self.kind,
                duration_ms=duration_ms,
                threshold_ms=self.threshold * 1000,
                table=scan.table if scan else None,
                rows_text=rows_text,
                columns=", ".join(scan.columns) if scan else "",
                index=index,
                plan_text=plan_text,
                star_text=(
                    " It also selects every column (`SELECT *`): name only the columns the "
                    "route returns, so less is read and sent (and a covering index can serve "
                    "it)."
                    if star
                    else ""
                ),
            ),
            route=state.route or None,
        )
