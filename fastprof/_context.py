"""Context variables that tie work to the request (or ``profile()`` block) it belongs to.

Context variables follow a request into the tasks it spawns and into worker threads started
through ``run_in_threadpool``/``asyncio.to_thread`` (both copy the context), which is what lets
detectors and thread hooks find the request without any global lookup.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastprof.backends.base import Capture
    from fastprof.record import RequestState

current_request: ContextVar[RequestState | None] = ContextVar("fastprof_request", default=None)
current_capture: ContextVar[Capture | None] = ContextVar("fastprof_capture", default=None)
