"""Context variables that tie work to the request (or ``profile()`` block) it belongs to.

Context variables follow a request into the tasks it spawns and into worker threads started
through ``run_in_threadpool``/``asyncio.to_thread`` (both copy the context), which is what lets
detectors and thread hooks find the request without any global lookup.
"""

from __future__ import annotations

import gc
from contextvars import Context, ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastprof.backends.base import Capture
    from fastprof.backends.continuous import SampledRequest
    from fastprof.record import RequestState

current_request: ContextVar[RequestState | None] = ContextVar("fastprof_request", default=None)
current_capture: ContextVar[Capture | None] = ContextVar("fastprof_capture", default=None)
#: A request the continuous sampler finds by itself (no registration; see SampledRequest).
current_sampled: ContextVar[SampledRequest | None] = ContextVar("fastprof_sampled", default=None)


def task_context(task: Any) -> Context | None:
    """The context ``task`` runs in, readable from outside it (another thread, a signal)."""
    get_context = getattr(task, "get_context", None)  # Python 3.12+
    if get_context is not None:
        context: Context | None = get_context()
        return context
    # 3.11: a C task's context is not exposed, but it is the first Context it references.
    return next((r for r in gc.get_referents(task) if isinstance(r, Context)), None)
