"""``event_loop_blocking``: an ``async def`` request that kept the event loop from running.

A heartbeat on the loop and a watchdog thread (see :mod:`fastprof.detectors._watchdog`) notice
when the loop has not run for ``threshold_ms`` (default 100). While it is stuck, the watchdog
samples the loop thread's stack every 10 ms; the request whose frames are on it held the loop.
The finding goes on that request, with:

* ``duration_ms`` - how long the loop was stuck (the heartbeat's lateness),
* ``cause`` - ``"cpu"`` when the loop thread was on a CPU (or waiting for one) for at least
  half of it, ``"wait"`` when it sat in a blocking call,
* ``call`` / ``stuck_in`` - the call on the user's line and the innermost call it was in,
* ``delayed_requests`` / ``delayed`` - the other requests in flight, all stalled with it.

Not blamed on the app (counted in :attr:`EventLoopBlockingDetector.stats` instead): stalls that
were mostly garbage collection, stalls during which the whole process got no CPU (stopped,
descheduled), stalls with no user code of a request on the stack, and stalls the watchdog could
only see afterwards (no sample). See docs/detectors/event_loop_blocking.md.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import linecache
import math
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from types import CodeType, FrameType
from typing import Any

from fastprof.advice import advice
from fastprof.detectors._watchdog import Episode, Position, Sample, Watchdog
from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, Severity, is_user_file
from fastprof.record import RequestState

THRESHOLD_RANGE_MS = (10.0, 60_000.0)
#: a stall this long is "high" at once; shorter ones become "high" when the line repeats
HIGH_SECONDS = 0.5
REPEATED = 3
#: keep at most this many findings of requests that have not ended yet
_MAX_PENDING = 1000


@dataclass(slots=True)
class BlockingStats:
    """Loop stalls seen, by what they were. Only ``reported`` ones become findings."""

    #: blamed on a request: findings
    reported: int = 0
    reported_seconds: float = 0.0
    #: mostly garbage collection (``gc.callbacks`` timed a collection over half of it)
    gc_pauses: int = 0
    gc_seconds: float = 0.0
    #: the process got no CPU (the watchdog itself woke late and nothing ran), or the loop
    #: thread waited on the CPU run queue for most of it
    descheduled: int = 0
    descheduled_seconds: float = 0.0
    #: no user code of a request on the loop's stack (framework code, plain callbacks)
    unattributed: int = 0
    unattributed_seconds: float = 0.0
    #: seen only afterwards, from the late heartbeat: the watchdog could not sample it
    unobserved: int = 0
    unobserved_seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class EventLoopBlockingDetector(Detector):
    """Finds requests that blocked the event loop. Option: ``threshold_ms`` (10-60000)."""

    kind = "event_loop_blocking"

    def __init__(self, *, threshold_ms: float = 100.0, **options: Any) -> None:
        if options:
            raise ValueError(
                f"event_loop_blocking: unknown option(s) {', '.join(sorted(options))}; "
                "the one option is threshold_ms"
            )
        super().__init__()
        low, high = THRESHOLD_RANGE_MS
        if (
            not isinstance(threshold_ms, int | float)
            or isinstance(threshold_ms, bool)
            or not math.isfinite(threshold_ms)
            or not low <= threshold_ms <= high
        ):
            raise ValueError(
                f"event_loop_blocking: threshold_ms={threshold_ms!r} is not valid; "
                f"use a number of milliseconds from {low:g} to {high:g} (default 100)"
            )
        self.threshold = threshold_ms / 1000
        self.stats = BlockingStats()
        self._starts = 0
        self._watchdog: Watchdog | None = None
        self._pending: dict[RequestState, list[Finding]] = {}
        self._repeats: Counter[tuple[str, int]] = Counter()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._starts += 1
        if self._watchdog is None:
            from fastprof.middleware import FastprofMiddleware

            self._watchdog = Watchdog(
                threshold=self.threshold,
                anchor=FastprofMiddleware._serve.__code__,
                state_of=self._state_of,
                state_of_thread=self._state_of_thread,
                on_episode=self._on_episode,
            )
        self._watchdog.start()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # outside a loop: the first request's finish() watches its loop
        self._watchdog.watch(loop)

    def stop(self) -> None:
        if self._starts == 0:
            return
        self._starts -= 1
        if self._starts == 0 and self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
            self._pending.clear()

    @property
    def running(self) -> bool:
        return self._watchdog is not None and self._watchdog.running

    # -- the request path ------------------------------------------------------------------
    def finish(self, state: RequestState) -> list[Finding]:
        watchdog = self._watchdog
        if watchdog is None:
            return []
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop is not watchdog.last_loop:
            watchdog.watch(loop)
        if watchdog.open or self._pending:
            watchdog.finish(state)
            found = self._pending.pop(state, [])
            # Made while the request ran, before its route was known.
            return [f.on_route(state.route or None) for f in found]
        return []

    def _state_of(self, frame: FrameType) -> RequestState | None:
        """The request a ``FastprofMiddleware._serve`` frame serves, if that middleware is ours."""
        local = frame.f_locals
        state = local.get("state")
        if isinstance(state, RequestState) and self in getattr(local.get("self"), "detectors", ()):
            return state
        return None

    def _state_of_thread(self, ident: int) -> RequestState | None:
        """The state of a ``guard()`` block running this detector on thread ``ident``."""
        from fastprof.guard import state_on_thread

        return state_on_thread(ident, self)

    # -- episodes (on the watchdog thread, or on the loop thread from finish) ---------------
    def _on_episode(self, episode: Episode) -> None:
        stats = self.stats
        duration = episode.duration
        if episode.gc >= 0.5 * duration:
            stats.gc_pauses += 1
            stats.gc_seconds += duration
            return
        # Waiting on the run queue most of the time, with too little work of its own to have
        # stalled for long on a free CPU: the machine was busy, not the loop. (A CPU-bound
        # request on a busy machine also waits on the run queue, but uses CPU for it.)
        cpu = episode.cpu
        starved = (
            episode.runqueue is not None
            and cpu is not None
            and episode.runqueue >= 0.5
            and cpu * duration < self.threshold / 2
        )
        samples = [s for s in episode.samples if s.user is not None]
        # The process was frozen for most of it (its watchdog could not run, and it used no
        # CPU) - unless the loop was seen stuck in a request's code: on a busy machine the
        # watchdog itself waits for a CPU while the loop sits in a blocking call, and that
        # stall is the request's.
        frozen = episode.frozen >= 0.5 * duration and not samples
        if frozen or starved:
            stats.descheduled += 1
            stats.descheduled_seconds += duration
            return
        if not episode.samples:
            stats.unobserved += 1
            stats.unobserved_seconds += duration
            return
        state = episode.state
        if state is None or not samples:
            stats.unattributed += 1
            stats.unattributed_seconds += duration
            return
        finding = self._finding(episode, samples)
        state.blocked += duration
        stats.reported += 1
        stats.reported_seconds += duration
        if len(self._pending) >= _MAX_PENDING:
            self._pending.clear()  # requests that never ended: drop, rather than grow
        self._pending.setdefault(state, []).append(finding)

    def _finding(self, episode: Episode, samples: list[Sample]) -> Finding:
        duration = episode.duration
        places = Counter(_place(s.user) for s in samples if s.user is not None)
        place, at_place = places.most_common(1)[0]
        file, line, function = place
        here = [s for s in samples if s.user is not None and _place(s.user) == place]
        call = _most_common(_call_at(s.user) for s in here if s.user is not None)
        cause = _cause(episode, samples, self.threshold)
        stuck_in = _stuck_in(samples, cause)
        callee = _most_common(s.callee_module for s in here)
        key = (file, line)
        self._repeats[key] += 1
        repeats = self._repeats[key]
        severity: Severity = (
            "high"
            if duration >= HIGH_SECONDS or repeats >= REPEATED
            else "medium"
            if duration >= 0.1
            else "low"
        )
        what = f"{call}()" if call else stuck_in
        delayed = [f"{s.method} {s.path}" for s in episode.delayed]
        evidence: dict[str, Any] = {
            "duration_ms": round(duration * 1000, 1),
            "cause": cause,
            "loop_cpu_share": round(episode.cpu, 2) if episode.cpu is not None else None,
            "loop_runqueue_share": (
                round(episode.runqueue, 2) if episode.runqueue is not None else None
            ),
            "call": call,
            "stuck_in": stuck_in,
            "samples": len(samples),
            "location_share": round(at_place / len(samples), 2),
            "delayed_requests": len(delayed),
            "delayed": delayed[:10],
            "gc_ms": round(episode.gc * 1000, 1),
            "loop": episode.loop,
            "threshold_ms": round(self.threshold * 1000, 1),
            "occurrences": repeats,
        }
        return Finding(
            kind=self.kind,
            severity=severity,
            title=(
                f"Event loop blocked for {duration * 1000:.0f} ms by {what} "
                f"({'CPU-bound' if cause == 'cpu' else 'blocking wait'})"
            ),
            evidence=evidence,
            location=Location(file, line, function),
            advice=advice(
                self.kind,
                cause=cause,
                call=what,
                blocked_ms=duration * 1000,
                library=callee.partition(".")[0] if callee else None,
            ),
        )


# -- describing a stall --------------------------------------------------------------------
def _place(position: Position) -> tuple[str, int, str]:
    code, line, _ = position
    return (code.co_filename, line, code.co_name)


def _most_common(values: Any) -> Any:
    counted = Counter(v for v in values if v is not None)
    return counted.most_common(1)[0][0] if counted else None


def _cause(episode: Episode, samples: list[Sample], threshold: float) -> str:
    """``"cpu"`` when the loop thread wanted a CPU for at least half of the stall."""
    if episode.cpu is not None:
        if episode.cpu + (episode.runqueue or 0.0) >= 0.5:
            return "cpu"
        # A C call that held the GIL all along kept the watchdog out: its run-queue time (a
        # busy machine) was not measured, but it worked - as long as it used the CPU at all.
        held = max(s.gil_wait for s in episode.samples) >= 0.5 * episode.duration
        return "cpu" if held and episode.cpu * episode.duration >= threshold / 2 else "wait"
    # No thread CPU clock on this platform: a loop frozen on one instruction is waiting.
    inner = Counter(s.inner[::2] for s in samples).most_common(1)[0][1]
    return "wait" if inner >= 0.8 * len(samples) else "cpu"


def _stuck_in(samples: list[Sample], cause: str) -> str:
    """The innermost call the loop thread was in, as far as the samples tell.

    A frame seen at one call all along is in that call - unless the stall is CPU-bound and the
    GIL was not free when the watchdog took it: a call that releases the GIL (hashlib, sqlite,
    ``os.read``) lets the watchdog in at once, Python bytecode only at the next switch
    interval, and ``while time.perf_counter() < end`` hands it over at its call every time.
    One or two samples taken long after the watchdog woke follow a C call that held the GIL
    (``json.dumps``, ``re``).
    """
    counted = Counter((s.inner, s.inner_module) for s in samples)
    (inner, module), count = counted.most_common(1)[0]
    code = inner[0]
    call = _call_at(inner)
    in_call = call is not None and count >= 0.8 * len(samples)
    if in_call and cause == "cpu":
        switch = sys.getswitchinterval()
        free = sum(1 for s in samples if s.gil_wait < 0.5 * switch)
        held = len(samples) <= 2 and all(s.gil_wait >= 4 * switch for s in samples)
        in_call = free >= len(samples) / 2 or held
    if is_user_file(code.co_filename):
        # The user's own frame is innermost: in one C call, or running Python code.
        return call if in_call and call else f"Python code in {code.co_qualname}"
    where = f"{module}.{code.co_qualname}" if module else code.co_qualname
    return f"{call} in {where}" if in_call else where


_calls: dict[tuple[CodeType, int], str | None] = {}


def _call_at(position: Position) -> str | None:
    """The function called by the expression a frame is at (``time.sleep``), if it is a call."""
    code, _, lasti = position
    key = (code, lasti)
    if key not in _calls:
        if len(_calls) > 4096:
            _calls.clear()
        _calls[key] = _read_call(code, lasti)
    return _calls[key]


def _read_call(code: CodeType, lasti: int) -> str | None:
    if lasti < 0:
        return None
    found = next(itertools.islice(code.co_positions(), lasti // 2, None), None)
    if found is None:
        return None
    line, end_line, column, end_column = found
    if line is None or end_line is None or column is None or end_column is None:
        return None
    lines = linecache.getlines(code.co_filename)
    if end_line > len(lines) or end_line - line > 20:
        return None
    # Columns are UTF-8 byte offsets.
    chunk = [text.encode() for text in lines[line - 1 : end_line]]
    chunk[-1] = chunk[-1][:end_column]
    chunk[0] = chunk[0][column:]
    try:
        node = ast.parse("(" + b"".join(chunk).decode() + ")", mode="eval").body
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(node, ast.Await):
        node = node.value
    if not isinstance(node, ast.Call):
        return None
    return ast.unparse(node.func)[:80]
