"""Garbage-collector pauses: when the whole process stood still, so that a timing can leave it out.

A full (generation 2) collection stops every thread; with a hundred thousand objects it takes
40-130 ms here (measured during a demo scan). A query, a wait for a pool connection or a
thread that happens to span one looks that much slower, though neither the database nor the
pool had anything to do with it. Detectors that judge a duration (slow_query,
pool_exhaustion) subtract the pauses that overlap it (:func:`overlap`) and say so in their
evidence.

``gc.callbacks`` is the only hook; it is installed while at least one user holds it
(:func:`acquire`, counted) and costs two calls per collection. Only pauses of at least
:data:`MIN_PAUSE` are kept (young collections take microseconds), in a short ring.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from typing import Any

#: Pauses shorter than this are not kept (seconds).
MIN_PAUSE = 0.001

_clock = time.perf_counter
_lock = threading.Lock()
_users = 0
_started = 0.0
#: (start, end) of recent pauses, oldest first.
_pauses: deque[tuple[float, float]] = deque(maxlen=256)


def _callback(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = _clock()
        return
    end = _clock()
    if end - _started >= MIN_PAUSE:
        _pauses.append((_started, end))


def overlap(start: float, end: float) -> float:
    """Seconds of collector pauses between ``start`` and ``end`` (``perf_counter`` times)."""
    total = 0.0
    for pause_start, pause_end in reversed(_pauses):
        if pause_end <= start:
            break
        total += max(0.0, min(end, pause_end) - max(start, pause_start))
    return total


def acquire() -> None:
    """Start recording pauses (counted: every acquire needs one release)."""
    global _users
    with _lock:
        _users += 1
        if _users == 1 and _callback not in gc.callbacks:
            gc.callbacks.append(_callback)


def release() -> None:
    global _users
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0:
            if _callback in gc.callbacks:
                gc.callbacks.remove(_callback)
            _pauses.clear()


def installed() -> bool:
    return _callback in gc.callbacks
