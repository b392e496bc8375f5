"""``guard()``: run fastprof's detectors around a block of code, and fail when they find a problem.

The test-time guard: what blockbuster does for event-loop blocking and zen-queries for N+1,
in one block::

    with guard(fail_on=["n_plus_one"]) as g:
        client.get("/users")          # an N+1 here raises FastprofAssertion
    print(g.findings)

    async with guard() as g:          # just collect
        await load_dashboard()

The block runs as one "request": a :class:`~fastprof.record.RequestState` is put in
``fastprof._context.current_request`` (tasks and worker threads started inside inherit it), the
chosen detectors are started, and at the end their ``finish`` turns what was recorded into
findings. Two hooks let other parts of fastprof reach a running guard:

* :func:`forward` - findings a :class:`~fastprof.FastprofMiddleware` made about a request served
  inside the block (that request had the middleware's own state, not the guard's);
* :func:`state_on_thread` - the state of the guard entered on a thread, for a watchdog that
  looks at the loop thread from outside and finds no request frame on its stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from fastprof._context import current_request
from fastprof.detectors import Detector, make_detectors
from fastprof.findings import Finding
from fastprof.record import RequestState

logger = logging.getLogger("fastprof")

#: What ``guard()`` runs when not told: the three per-request problems of the guides' pitfalls.
DEFAULT_DETECT: tuple[str, ...] = ("n_plus_one", "event_loop_blocking", "duplicate_query")

_EVIDENCE_CHARS = 300

_current_guard: ContextVar[guard | None] = ContextVar("fastprof_guard", default=None)
#: thread ident -> guards entered on it, innermost last (read by watchdog threads)
_by_thread: dict[int, list[guard]] = {}


def forward(findings: Iterable[Finding]) -> None:
    """Give findings made elsewhere to the guard running around this code (if any)."""
    active = _current_guard.get()
    if active is not None and active.state is not None:
        active._forwarded.extend(findings)


def running() -> list[guard]:
    """Guard blocks that have been entered and not left (on any thread)."""
    return [active for entered in list(_by_thread.values()) for active in entered]


def state_on_thread(ident: int, detector: Detector | None = None) -> RequestState | None:
    """The state of the innermost guard entered on thread ``ident`` that runs ``detector``."""
    for active in reversed(_by_thread.get(ident, ())):
        if detector is None or detector in active._started:
            return active.state
    return None


class FastprofAssertion(AssertionError):
    """A guarded block produced findings of a kind it was told to fail on."""

    def __init__(self, message: str, findings: Sequence[Finding]) -> None:
        super().__init__(message)
        self.findings = list(findings)


class GuardError(RuntimeError):
    """A detector failed inside ``guard()`` (so the block could not be checked)."""


class guard:
    """Detectors around a block (``with`` / ``async with``); findings in ``.findings``.

    :param detect: detector names (or Detector classes/instances) to run; default
        :data:`DEFAULT_DETECT`. Kinds named in ``fail_on`` are added if missing.
    :param fail_on: finding kinds that make the block raise :class:`FastprofAssertion` (an
        ``AssertionError``) when it ends; True: any finding. Nothing is raised over an
        exception the block itself raised.
    :param detector_options: per-detector options, ``{"n_plus_one": {...}}``.
    :param threshold_ms: shorthand for ``event_loop_blocking``'s ``threshold_ms``.
    :param label: the name findings carry as their route (default: the caller's file:line).

    A detector that fails to start, finish or stop raises :class:`GuardError` (after every
    detector has been stopped), unless the block raised its own exception.
    """

    def __init__(
        self,
        detect: Iterable[str | type[Detector] | Detector] | None = None,
        *,
        fail_on: bool | Iterable[str] = (),
        detector_options: Mapping[str, Mapping[str, Any]] | None = None,
        threshold_ms: float | None = None,
        label: str | None = None,
    ) -> None:
        self.fail_on: bool | frozenset[str] = (
            fail_on if isinstance(fail_on, bool) else frozenset(fail_on)
        )
        specs = list(DEFAULT_DETECT if detect is None else detect)
        running = {_kind(spec) for spec in specs}
        if not isinstance(self.fail_on, bool):
            specs.extend(sorted(self.fail_on - running))
        options = {kind: dict(values) for kind, values in (detector_options or {}).items()}
        if threshold_ms is not None:
            options.setdefault("event_loop_blocking", {})["threshold_ms"] = threshold_ms
        self.detectors: list[Detector] = make_detectors(specs, options)
        self.label = label
        #: Findings of the last block, once it has ended.
        self.findings: list[Finding] = []
        self.state: RequestState | None = None
        self._started: list[Detector] = []
        self._forwarded: list[Finding] = []
        self._tokens: tuple[Token[RequestState | None], Token[guard | None]] | None = None
        self._thread = 0

    # -- the block -------------------------------------------------------------------------
    def __enter__(self) -> guard:
        self._begin(sys._getframe(1))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        self._end(failed=exc is not None)

    async def __aenter__(self) -> guard:
        self._begin(sys._getframe(1))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        # Let callbacks already queued on the loop (a watchdog's report) run first.
        await asyncio.sleep(0)
        self._end(failed=exc is not None)

    def _begin(self, caller: Any) -> None:
        if self.state is not None:
            raise RuntimeError("this guard is already running; create one guard per block")
        label = self.label or f"{caller.f_code.co_filename}:{caller.f_lineno}"
        state = RequestState("GUARD", label, time.perf_counter())
        state.route = label
        self.findings = []
        self._started = []
        self._forwarded = []
        for detector in self.detectors:
            try:
                detector.start()
            except Exception as exc:
                # A test tool fails loudly: a detector that cannot run would pass every test.
                self._stop_started()
                raise GuardError(f"detector {detector.kind} could not start: {exc!r}") from exc
            self._started.append(detector)
        for detector in self._started:
            if type(detector).begin is not Detector.begin:
                try:
                    detector.begin(state)
                except Exception as exc:
                    self._stop_started()
                    raise GuardError(f"detector {detector.kind} could not begin: {exc!r}") from exc
        self.state = state
        self._tokens = (current_request.set(state), _current_guard.set(self))
        self._thread = threading.get_ident()
        _by_thread.setdefault(self._thread, []).append(self)

    def _end(self, *, failed: bool) -> None:
        __tracebackhide__ = True
        state, tokens = self.state, self._tokens
        assert state is not None
        self.state = self._tokens = None
        entered = _by_thread.get(self._thread, [])
        if self in entered:
            entered.remove(self)
        if not entered:
            _by_thread.pop(self._thread, None)
        if tokens is not None:
            # Exited in another context than it was entered in: leave that context alone.
            with contextlib.suppress(ValueError):
                current_request.reset(tokens[0])
            with contextlib.suppress(ValueError):
                _current_guard.reset(tokens[1])
        found = [f if f.route is not None else f.on_route(state.route) for f in state.findings]
        found.extend(self._forwarded)
        self._forwarded = []
        errors: list[tuple[str, Exception]] = []
        for detector in self._started:
            try:
                found.extend(
                    f if f.route is not None else f.on_route(state.route)
                    for f in detector.finish(state)
                )
            except Exception as exc:
                logger.exception("fastprof: detector %s failed in guard", detector.kind)
                errors.append((detector.kind, exc))
        errors.extend(self._stop_started())
        self.findings = found
        if failed:
            return
        if errors:
            kind, first = errors[0]
            raise GuardError(f"detector {kind} failed: {first!r}") from first
        self.check()

    def _stop_started(self) -> list[tuple[str, Exception]]:
        errors: list[tuple[str, Exception]] = []
        for detector in self._started:
            try:
                detector.stop()
            except Exception as exc:
                logger.exception("fastprof: stopping detector %s failed", detector.kind)
                errors.append((detector.kind, exc))
        self._started = []
        return errors

    # -- results ---------------------------------------------------------------------------
    def failures(self) -> list[Finding]:
        """The findings of the last block that ``fail_on`` names."""
        if self.fail_on is True:
            return list(self.findings)
        if self.fail_on is False:
            return []
        return [f for f in self.findings if f.kind in self.fail_on]

    def check(self) -> None:
        """Raise :class:`FastprofAssertion` if the last block produced failing findings."""
        __tracebackhide__ = True
        failing = self.failures()
        if failing:
            raise FastprofAssertion(describe(failing, headline=self._headline(failing)), failing)

    def _headline(self, failing: list[Finding]) -> str:
        kinds = sorted({f.kind for f in failing})
        return (
            f"fastprof found {len(failing)} problem(s) of a kind the guard fails on: "
            + ", ".join(kinds)
        )


def describe(findings: Sequence[Finding], *, headline: str | None = None) -> str:
    """Findings as text: title, location, evidence and advice of each."""
    lines = [headline] if headline else []
    for finding in findings:
        lines.append("")
        lines.append(f"[{finding.severity}] {finding.kind}: {finding.title}")
        if finding.location is not None:
            lines.append(f"  at {finding.location}")
        if finding.route:
            lines.append(f"  in {finding.route}")
        if finding.evidence:
            lines.append("  evidence:")
            for key, value in finding.evidence.items():
                text = repr(value) if not isinstance(value, str) else value
                if len(text) > _EVIDENCE_CHARS:
                    text = text[: _EVIDENCE_CHARS - 3] + "..."
                lines.append(f"    {key}: {text}")
        if finding.advice:
            advice = finding.advice.replace("\n", "\n    ")
            lines.append(f"  advice: {advice}")
    return "\n".join(lines)


def _kind(spec: str | type[Detector] | Detector) -> str:
    if isinstance(spec, Detector):
        return spec.kind
    if isinstance(spec, type):
        return spec.kind
    return spec  # registry names are the kinds
