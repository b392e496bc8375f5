"""Load an HTTP/1.1 server from this machine: what ``fastprof scan`` replays traffic with.

:func:`run_load` sends weighted :class:`RequestSpec` mixes closed-loop (as fast as the server
answers) or open-loop (``rate=``); :func:`replay` sends recorded traffic (:func:`load_jsonl`,
:func:`load_har`) at its original pace or as fast as possible. Both return a
:class:`LoadResult` with a :class:`Histogram` of latencies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastprof.load.client import LoadResult, RequestSpec, run_load
from fastprof.load.histogram import Histogram
from fastprof.load.replay import ReplayEntry, load_har, load_jsonl, replay

__all__ = [
    "Histogram",
    "LoadResult",
    "ReplayEntry",
    "RequestSpec",
    "load_har",
    "load_jsonl",
    "loop_factory",
    "replay",
    "run_load",
]


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (less CPU per request), else asyncio's.

    ``asyncio.Runner(loop_factory=loop_factory()).run(run_load(...))``
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop
