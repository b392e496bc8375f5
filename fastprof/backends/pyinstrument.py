"""The default backend: pyinstrument's statistical profiler, one profiler per request.

pyinstrument in ``async_mode="enabled"`` attributes time to the context that started it: while
the request's task is suspended, the time shows as ``await`` on the awaiting frame instead of as
whatever other request ran on the loop meanwhile. Worker-thread work (which pyinstrument's own
FastAPI recipe misses, its issue #257) is profiled by a second, thread-local profiler started in
the worker and grafted under the frame that awaited it.

pyinstrument runs in ``async_mode="strict"``: in "enabled" mode, with several requests profiled
at once, a request whose context was left at a point pyinstrument could not tie to an ``await``
got the next request's frames as its own (seen here with a ``def`` route beside an ``async def``
one). Strict mode marks that time out-of-context; fastprof counts it as the request waiting.

pyinstrument allows one async-aware profiler per context, so an async ``profile()`` block nested
inside a profiled request does not start a profiler of its own: it takes the slice of the outer
profiler's samples recorded while the block ran (same context, so exactly the block's samples).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TypeVar

from pyinstrument import Profiler
from pyinstrument.frame import AWAIT_FRAME_IDENTIFIER, OUT_OF_CONTEXT_FRAME_IDENTIFIER
from pyinstrument.stack_sampler import active_profiler_context_var

from fastprof._context import current_capture
from fastprof._frames import parse_identifier
from fastprof.backends.base import Backend, Capture, TreeSource
from fastprof.model import CallTree, FrameKey

T = TypeVar("T")

Records = Sequence[tuple[list[str], float]]

_SYNTHETIC = {AWAIT_FRAME_IDENTIFIER, OUT_OF_CONTEXT_FRAME_IDENTIFIER}
_THREAD_FILE = "\x00<thread>\x00"


class PyinstrumentBackend(Backend):
    """pyinstrument, async-aware, following threadpool work. ``interval`` in seconds (1 ms)."""

    name = "pyinstrument"

    def start(self, anchor: FrameType | None, *, is_async: bool) -> Capture:
        if is_async and active_profiler_context_var.get() is not None:
            outer = current_capture.get()
            if isinstance(outer, _PyinstrumentCapture) and outer.records is not None:
                return _SliceCapture(outer, anchor)
            is_async = False  # someone else's pyinstrument owns this context
        return _PyinstrumentCapture(self.interval, anchor, is_async)


class _PyinstrumentCapture(Capture):
    def __init__(self, interval: float, anchor: FrameType | None, is_async: bool) -> None:
        super().__init__(anchor)
        self.interval = interval
        self.threads: list[tuple[list[FrameKey], Records, str | None]] = []
        self._lock = threading.Lock()
        self.profiler = Profiler(interval=interval, async_mode="strict" if is_async else "disabled")
        self.profiler.start(caller_frame=anchor)
        active = getattr(self.profiler, "_active_session", None)
        #: The live sample list (nested async blocks slice it); None if pyinstrument changed.
        self.records: list[tuple[list[str], float]] | None = getattr(active, "frame_records", None)

    def stop(self) -> TreeSource:
        session = self.profiler.stop()
        self.records = None
        anchor = _identifier(self.anchor)
        threads = list(self.threads)
        meta = {"cpu_time": session.cpu_time, "sample_count": session.sample_count}
        return TreeSource(
            lambda: _build(
                session.frame_records, anchor, threads, self.interval, session.duration, meta
            )
        )

    def wrap_thread(self, func: Callable[..., T], path: list[Any]) -> Callable[..., T]:
        def run_profiled(*args: Any, **kwargs: Any) -> T:
            try:
                here = sys._getframe()
                profiler = Profiler(interval=self.interval, async_mode="disabled")
                profiler.start(caller_frame=here)
            except Exception:
                self.log_failure("starting a worker-thread profiler")
                return func(*args, **kwargs)
            try:
                return func(*args, **kwargs)
            finally:
                try:
                    records = profiler.stop().frame_records
                    with self._lock:
                        self.threads.append((path, records, _identifier(here)))
                except Exception:
                    self.log_failure("stopping a worker-thread profiler")

        return run_profiled


class _SliceCapture(Capture):
    """A nested async block: the outer capture's samples taken while the block ran."""

    def __init__(self, outer: _PyinstrumentCapture, anchor: FrameType | None) -> None:
        super().__init__(anchor)
        self.outer = outer
        assert outer.records is not None
        self.first = len(outer.records)
        self.thread_first = len(outer.threads)
        self.started = time.perf_counter()

    def stop(self) -> TreeSource:
        duration = time.perf_counter() - self.started
        records = list(self.outer.records or [])[self.first :]
        threads = self.outer.threads[self.thread_first :]
        anchor = _identifier(self.anchor)
        return TreeSource(
            lambda: _build(records, anchor, threads, self.outer.interval, duration, {})
        )

    def wrap_thread(self, func: Callable[..., T], path: list[Any]) -> Callable[..., T]:
        # Thread work inside the block belongs to the outer capture too; the block's slice of
        # outer.threads picks it up. Paths are relative to the outer anchor - re-root them.
        return self.outer.wrap_thread(func, path)


def _identifier(frame: FrameType | None) -> str | None:
    if frame is None:
        return None
    code = frame.f_code
    return f"{code.co_name}\x00{code.co_filename}\x00{code.co_firstlineno}"


def _records_to_tree(tree: CallTree, records: Records, anchor: str | None) -> None:
    cache: dict[str, FrameKey] = {}
    for stack, seconds in records:
        identifiers = [frame.partition("\x01")[0] for frame in stack]
        awaiting = False
        if identifiers and identifiers[-1] in _SYNTHETIC:
            identifiers.pop()
            awaiting = True
        cut = -1
        if anchor is not None:
            try:
                # the last occurrence: a recursive app may contain the anchor's name too
                cut = len(identifiers) - 1 - identifiers[::-1].index(anchor)
            except ValueError:
                if awaiting:
                    # Out of context at an unknown await (the loop's frames, not ours):
                    # the request was waiting, we can't say where - the root waited.
                    cut = len(identifiers) - 1
        if cut < 0 and identifiers and _THREAD_FILE in identifiers[0]:
            cut = 0  # no anchor on this stack: drop pyinstrument's synthetic thread frame only
        identifiers = identifiers[cut + 1 :]
        keys = []
        for identifier in identifiers:
            key = cache.get(identifier)
            if key is None:
                key = cache[identifier] = parse_identifier(identifier)
            keys.append(key)
        tree.add_stack(keys, seconds, awaiting=awaiting)


def _build(
    records: Records,
    anchor: str | None,
    threads: list[tuple[list[FrameKey], Records, str | None]],
    interval: float,
    duration: float,
    meta: dict[str, Any],
) -> CallTree:
    tree = CallTree(backend="pyinstrument", duration=duration, interval=interval, meta=meta)
    _records_to_tree(tree, records, anchor)
    for path, thread_records, thread_anchor in threads:
        sub = CallTree()
        _records_to_tree(sub, thread_records, thread_anchor)
        tree.graft(path, sub.root)
    return tree
