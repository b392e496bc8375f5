"""``pool_exhaustion``: requests waiting for a database connection because the pool is full.

A pool of ``pool_size`` (+ ``max_overflow``) connections serves as many requests at once;
the next one waits in the pool's queue - SQLAlchemy's ``QueuePool`` up to ``pool_timeout``
(30 s) before it raises, asyncpg's ``Pool.acquire`` for as long as it is allowed to. The
wait shows in no query's time and no profile of the request's own code. The SQLAlchemy and
asyncpg hooks time each checkout made while every connection was checked out, and how long
connections are held (``fastprof/queries/pools.py``); a request whose waits add up to
``threshold_ms`` (default 20 ms), or that timed out, is reported with the pool's size, the
connections in use, and the routes that held connections longest - because the fix is
either a bigger pool or holding a connection for less time. Garbage-collector pauses that
overlap a wait are left out of it (``fastprof/_pauses.py``): they stall the holders too.
"""

from __future__ import annotations

from typing import Any

from fastprof import _pauses
from fastprof.advice import advice
from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Severity
from fastprof.queries import pools
from fastprof.queries.base import QueryHooks
from fastprof.record import RequestState


class PoolExhaustionDetector(Detector):
    kind = "pool_exhaustion"
    needs_queries = True

    def __init__(self, *, threshold_ms: float = 20.0, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(threshold_ms, int | float) or threshold_ms <= 0:
            raise ValueError(
                f"pool_exhaustion threshold_ms={threshold_ms!r} is not valid; "
                "use a number of milliseconds > 0"
            )
        self.threshold = threshold_ms / 1000
        self._hooks = QueryHooks()
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            pools.watch()
            _pauses.acquire()
            self._hooks.start()

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._hooks.stop()
            _pauses.release()
            pools.unwatch()

    def finish(self, state: RequestState) -> list[Finding]:
        waits = list(pools.waits_of(state))
        if not waits:
            return []
        # A collector pause during a wait stalled the holders too: not the pool's doing.
        paused = sum(_pauses.overlap(w.started, w.started + w.seconds) for w in waits)
        total = sum(w.seconds for w in waits) - paused
        timed_out = any(w.timed_out for w in waits)
        if total < self.threshold and not timed_out:
            return []
        worst = max(waits, key=lambda w: w.seconds)
        info = worst.info
        holders = info.holders()
        evidence: dict[str, Any] = {
            "wait_ms": round(total * 1000, 2),
            "longest_wait_ms": round(worst.seconds * 1000, 2),
            "checkouts_waited": len(waits),
            "gc_pause_ms": round(paused * 1000, 2),
            "timed_out": timed_out,
            "pool": info.name,
            "pool_size": info.size,
            "max_overflow": info.max_overflow,
            "in_use_at_wait": worst.in_use,
            "peak_in_use": info.peak_in_use,
            "peak_waiting": info.peak_waiting,
            "pool_timeout_s": info.timeout,
            "holders": holders,
        }
        top = holders[0] if holders else None
        severity: Severity = "high" if timed_out or total >= 10 * self.threshold else "medium"
        what = "Timed out" if timed_out else f"Waited {total * 1000:.0f} ms"
        return [
            Finding(
                kind=self.kind,
                severity=severity,
                title=(
                    f"{what} for a database connection: all {info.capacity} of the pool's "
                    f"connections were in use ({info.name})"
                ),
                evidence=evidence,
                location=worst.location,
                advice=advice(
                    self.kind,
                    driver="asyncpg" if info.name.startswith("asyncpg") else "sqlalchemy",
                    size=info.size,
                    max_overflow=info.max_overflow,
                    capacity=info.capacity,
                    wait_ms=total * 1000,
                    holder=top["route"] if top else "?",
                    hold_ms=top["median_hold_ms"] if top else 0.0,
                    demand=info.capacity + info.peak_waiting,
                ),
                route=state.route or None,
            )
        ]
