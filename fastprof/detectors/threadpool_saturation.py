"""``threadpool_saturation``: requests queueing for a worker thread.

``def`` endpoints, sync dependencies and ``run_in_threadpool`` share AnyIO's default thread
limiter (40 tokens); ``asyncio.to_thread`` uses the loop's default executor. When every token is
taken, the next request's work waits in a queue before it even starts - latency no profile of
the work itself shows. The detector times each hand-over (``fastprof/_threadpool.py``) and
reports a request whose total wait, in hand-overs made while every thread was taken, passed
``threshold_ms`` (default 20 ms), with the pool size, the tokens in use at hand-over, and the
function that waited.
"""

from __future__ import annotations

from typing import Any

from fastprof import _threadpool
from fastprof.advice import advice
from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, Severity, is_user_file
from fastprof.record import RequestState


class ThreadpoolSaturationDetector(Detector):
    kind = "threadpool_saturation"

    def __init__(self, *, threshold_ms: float = 20.0, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(threshold_ms, int | float) or threshold_ms <= 0:
            raise ValueError(
                f"threadpool_saturation threshold_ms={threshold_ms!r} is not valid; "
                "use a number of milliseconds > 0"
            )
        self.threshold = threshold_ms / 1000
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            _threadpool.acquire_waits()

    def stop(self) -> None:
        if self._started:
            self._started = False
            _threadpool.release_waits()

    def finish(self, state: RequestState) -> list[Finding]:
        # Only hand-overs made while the pool was full count: a short wait with a free thread
        # is the worker starting (or waiting for the GIL), not saturation.
        waits = [w for w in state.facts.get("thread_waits", ()) if w[3] > 0 and w[2] >= w[3]]
        if not waits:
            return []
        total = sum(w[1] for w in waits)
        if total < self.threshold:
            return []
        pool, longest, in_use, size, code = max(waits, key=lambda w: w[1])
        # point at the user's function that waited (FastAPI also hands its own work over)
        mine = [w[4] for w in waits if w[4] is not None and is_user_file(w[4].co_filename)]
        code = mine[0] if mine else code
        location = (
            Location(code.co_filename, code.co_firstlineno, code.co_name) if code else None
        )
        severity: Severity = "high" if total >= 10 * self.threshold else "medium"
        name = "AnyIO's thread limiter" if pool == "anyio" else "the loop's default executor"
        evidence: dict[str, Any] = {
            "wait_ms": round(total * 1000, 2),
            "longest_wait_ms": round(longest * 1000, 2),
            "handovers": len(waits),
            "pool": pool,
            "request_ms": round((state.facts.get("duration") or 0) * 1000, 2) or None,
        }
        if size > 0:
            evidence["pool_size"] = int(size)
            # running or already queued when this request handed its work over
            evidence["ahead_at_handover"] = in_use
        return [
            Finding(
                kind=self.kind,
                severity=severity,
                title=(
                    f"Waited {total * 1000:.0f} ms for a worker thread from {name}"
                    + (f" ({in_use} ahead of it, {int(size)} threads)" if size > 0 else "")
                ),
                evidence=evidence,
                location=location,
                advice=advice(self.kind, pool=pool, size=size),
                route=state.route or None,
            )
        ]
