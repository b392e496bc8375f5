"""Follow a request's work into worker threads.

``def`` endpoints, sync dependencies and ``run_in_threadpool`` all go through
``anyio.to_thread.run_sync``; user code also calls ``asyncio.to_thread``. Neither offers a hook, so
while at least one capture that follows threads is active both are replaced by thin wrappers that
let the capture wrap the function (start a profiler in the worker, or register the thread with a
sampler). The originals come back when the last capture stops, so nothing is left patched.

The threadpool_saturation detector also asks (``acquire_waits``) for every request's wait for a
worker thread: the time from handing the work over to the thread starting it, recorded on the
request's ``state.facts["thread_waits"]`` with the pool's size and tokens in use at hand-over.
"""

from __future__ import annotations

import asyncio
import asyncio.threads
import functools
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from fastprof._context import current_capture, current_request, current_sampled
from fastprof._frames import stack_below
from fastprof.model import is_library_file

if TYPE_CHECKING:
    from fastprof.record import RequestState

_lock = threading.Lock()
_users = 0
_wait_users = 0
_original_run_sync: Any = None
_original_to_thread: Any = None


def _prepare(func: Callable[..., Any], caller: FrameType, pool: str) -> Callable[..., Any]:
    code = _code_of(func)
    capture: Any = current_capture.get()
    if capture is None:
        # A request the continuous sampler finds by itself has no capture until it needs one.
        sampled = current_sampled.get()
        if sampled is not None:
            capture = sampled[0].sampler.passive_capture(caller)  # [0]: its backend
    if capture is not None:
        try:
            func = capture.wrap_thread(func, stack_below(capture.anchor, caller))
        except Exception:  # pragma: no cover - a broken capture must not break the app
            capture.log_failure("wrap_thread")
    if _wait_users:
        state = current_request.get()
        if state is not None:
            func = _timed(func, state, pool, code)
    return func


def _executor_load() -> tuple[int, float]:
    """Busy workers and size of the running loop's default executor (-1, -1 if unknown)."""
    try:
        executor: Any = asyncio.get_running_loop()._default_executor  # type: ignore[attr-defined]
        size = executor._max_workers
        idle = executor._idle_semaphore._value
        return len(executor._threads) - idle + executor._work_queue.qsize(), size
    except Exception:  # not a ThreadPoolExecutor, or its internals changed: unknown
        return -1, -1


def _code_of(func: Any) -> CodeType | None:
    """The code of the function handed over - the user's, when a framework wraps it.

    FastAPI hands ``partial(_run_sync_endpoint, function=endpoint, ...)`` over; the endpoint is
    what a reader wants to see.
    """
    candidates = [func]
    while isinstance(func, functools.partial):
        candidates.extend([func.func, *func.args, *func.keywords.values()])
        func = func.func
    found = [getattr(c, "__code__", None) for c in candidates if callable(c)]
    codes = [c for c in found if isinstance(c, CodeType)]
    for code in codes:
        if not is_library_file(code.co_filename):
            return code
    return codes[0] if codes else None


# Hand-overs seen while waits are timed, per pool: [handed over but not started, running].
# A limiter's own count of borrowed tokens lags: a task takes its token a few loop iterations
# after handing work over, so a burst of requests all see a free pool. Our own count doesn't.
_busy: dict[str, list[int]] = {"anyio": [0, 0], "executor": [0, 0]}
_busy_lock = threading.Lock()


def _timed(
    func: Callable[..., Any], state: RequestState, pool: str, code: CodeType | None
) -> Callable[..., Any]:
    """Wrap ``func`` to record how long it queued for a worker thread on ``state.facts``."""
    queued = time.perf_counter()
    if pool == "anyio":
        limiter = anyio.to_thread.current_default_thread_limiter()
        borrowed, size = limiter.borrowed_tokens, limiter.total_tokens
    else:
        borrowed, size = _executor_load()
    counts = _busy[pool]
    with _busy_lock:
        ahead = max(borrowed, counts[0] + counts[1])
        counts[0] += 1
    target = func

    def run(*args: Any, **kwargs: Any) -> Any:
        waited = time.perf_counter() - queued
        with _busy_lock:
            run.fastprof_started = True  # type: ignore[attr-defined]
            counts[0] -= 1
            counts[1] += 1
        waits: list[tuple[str, float, int, float, CodeType | None]] = state.facts.setdefault(
            "thread_waits", []
        )
        waits.append((pool, waited, ahead, size, code))
        try:
            return target(*args, **kwargs)
        finally:
            with _busy_lock:
                counts[1] -= 1

    run.fastprof_pending = counts  # type: ignore[attr-defined]
    run.fastprof_started = False  # type: ignore[attr-defined]
    return run


async def _run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    wrapped = _prepare(func, sys._getframe(1), "anyio")
    try:
        return await _original_run_sync(wrapped, *args, **kwargs)
    finally:
        _abandoned(wrapped)


async def _to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    wrapped = _prepare(func, sys._getframe(1), "executor")
    try:
        return await _original_to_thread(wrapped, *args, **kwargs)
    finally:
        _abandoned(wrapped)


def _abandoned(wrapped: Any) -> None:
    """A timed hand-over that never started (cancelled while queued) stops counting as queued."""
    counts = getattr(wrapped, "fastprof_pending", None)
    if counts is not None and not wrapped.fastprof_started:
        with _busy_lock:
            counts[0] -= 1
        wrapped.fastprof_started = True


def acquire_waits() -> None:
    """Also time every request's wait for a worker thread (counted, like acquire)."""
    global _wait_users
    acquire()
    with _lock:
        _wait_users += 1


def release_waits() -> None:
    global _wait_users
    with _lock:
        _wait_users = max(0, _wait_users - 1)
    release()


def acquire() -> None:
    """Install the wrappers (counted: every acquire needs one release)."""
    global _users, _original_run_sync, _original_to_thread
    with _lock:
        _users += 1
        if _users == 1:
            _original_run_sync = anyio.to_thread.run_sync
            _original_to_thread = asyncio.to_thread
            anyio.to_thread.run_sync = _run_sync  # type: ignore[assignment]
            asyncio.to_thread = asyncio.threads.to_thread = _to_thread


def release() -> None:
    global _users
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0:
            # Only undo our own patch: someone may have wrapped ours since.
            if anyio.to_thread.run_sync is _run_sync:
                anyio.to_thread.run_sync = _original_run_sync
            if asyncio.to_thread is _to_thread:
                asyncio.to_thread = asyncio.threads.to_thread = _original_to_thread


def installed() -> bool:
    return anyio.to_thread.run_sync is _run_sync
