"""Follow a request's work into worker threads.

``def`` endpoints, sync dependencies and ``run_in_threadpool`` all go through
``anyio.to_thread.run_sync``; user code also calls ``asyncio.to_thread``. Neither offers a hook, so
while at least one capture that follows threads is active both are replaced by thin wrappers that
let the capture wrap the function (start a profiler in the worker, or register the thread with a
sampler). The originals come back when the last capture stops, so nothing is left patched.
"""

from __future__ import annotations

import asyncio
import asyncio.threads
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from fastprof._context import current_capture
from fastprof._frames import stack_below

_lock = threading.Lock()
_users = 0
_original_run_sync: Any = None
_original_to_thread: Any = None


async def _run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    capture = current_capture.get()
    if capture is not None:
        try:
            func = capture.wrap_thread(func, stack_below(capture.anchor, sys._getframe(1)))
        except Exception:  # pragma: no cover - a broken capture must not break the app
            capture.log_failure("wrap_thread")
    return await _original_run_sync(func, *args, **kwargs)


async def _to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    capture = current_capture.get()
    if capture is not None:
        try:
            func = capture.wrap_thread(func, stack_below(capture.anchor, sys._getframe(1)))
        except Exception:  # pragma: no cover
            capture.log_failure("wrap_thread")
    return await _original_to_thread(func, *args, **kwargs)


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
