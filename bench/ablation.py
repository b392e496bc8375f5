"""The continuous mode's request path taken apart: what each of its parts costs a request.

``FastprofMiddleware(backend="continuous")`` serves a request with ``_SampledMiddleware.__call__``
(fastprof/middleware.py). Each variant here runs a copy of that method with parts left out, so
that side by side (``bench/simultaneous.py``) the step from one variant to the next is the cost
of one part:

=================  =====================================================================
``passive_floor``  the same middleware class, passing the request straight through
``passive_checks`` + the entry checks (http, main thread, timer armed) and the clock
``passive_holder`` + the holder list the sampler finds (``SampledRequest``)
``passive_ctx``    + the context variable (spawned tasks, worker threads find the request)
``passive_watch``  the holder + the ``send`` wrapper (status and body size), no context var
``passive_path``   the real ``_SampledMiddleware``: holder, context variable and wrapper
``passive_1hz``    the real one with the sampler ticking at 1 Hz (``continuous_interval=1``)
=================  =====================================================================

In all but the last the sampler's timer is held off (it is armed an hour ahead), so no tick
lands: ``continuous`` of ``bench/apps.py``, beside them, adds the 100 Hz ticks, and
``passive_1hz`` - whose own ticks cost a hundredth of those - checks that holding the timer
off changes nothing else. Holding the timer is process-wide, so a process serves one of these
variants (as uvicorn does here)::

    .venv/bin/python -m bench.simultaneous --rounds 10 --duration 4 --variants \\
        passive_floor,passive_checks,passive_holder,passive_ctx,passive_watch,passive_path

The copies must follow ``_SampledMiddleware.__call__`` when it changes; ``passive_path`` is the
real one, so a copy that drifted shows as a ``passive_ctx``/``passive_watch`` that costs more
than ``passive_path``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from bench.apps import _hello
from fastprof import FastprofMiddleware
from fastprof._context import current_sampled
from fastprof.backends.continuous import SampledRequest, Sampler
from fastprof.middleware import _MAIN, _get_ident, _perf_counter, _SampledMiddleware

#: Seconds ahead the sampler's timer is armed: no tick within a benchmark.
HELD_OFF = 3600.0


class _Floor(_SampledMiddleware):
    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _Checks(_SampledMiddleware):
    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and _get_ident() == _MAIN
            and (self._ticker.armed or self._wake_sampler())
        ):
            await FastprofMiddleware.__call__(self, scope, receive, send)
            return
        started = _perf_counter()
        await self.app(scope, receive, send)
        if self._slow is not None and _perf_counter() - started >= self._slow:
            return  # the real path ends the request here; without slow_ms never taken


class _Holder(_SampledMiddleware):
    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and _get_ident() == _MAIN
            and (self._ticker.armed or self._wake_sampler())
        ):
            await FastprofMiddleware.__call__(self, scope, receive, send)
            return
        started = _perf_counter()
        sampled: SampledRequest = [self.sampler, None, 0, 0]
        await self.app(scope, receive, send)
        if not (
            sampled[1] is not None
            or sampled[2] >= 500
            or (self._slow is not None and _perf_counter() - started >= self._slow)
        ):
            sampled[1] = False


class _Ctx(_SampledMiddleware):
    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and _get_ident() == _MAIN
            and (self._ticker.armed or self._wake_sampler())
        ):
            await FastprofMiddleware.__call__(self, scope, receive, send)
            return
        started = _perf_counter()
        sampled: SampledRequest = [self.sampler, None, 0, 0]
        token = current_sampled.set(sampled)
        try:
            await self.app(scope, receive, send)
        except BaseException:
            current_sampled.reset(token)
            raise
        current_sampled.reset(token)
        if not (
            sampled[1] is not None
            or sampled[2] >= 500
            or (self._slow is not None and _perf_counter() - started >= self._slow)
        ):
            sampled[1] = False


class _Watch(_SampledMiddleware):
    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and _get_ident() == _MAIN
            and (self._ticker.armed or self._wake_sampler())
        ):
            await FastprofMiddleware.__call__(self, scope, receive, send)
            return
        started = _perf_counter()
        sampled: SampledRequest = [self.sampler, None, 0, 0]

        def watch(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                sampled[2] = message["status"]
            else:
                sampled[3] += len(message.get("body", b""))
            return send(message)

        await self.app(scope, receive, watch)
        if not (
            sampled[1] is not None
            or sampled[2] >= 500
            or (self._slow is not None and _perf_counter() - started >= self._slow)
        ):
            sampled[1] = False


#: variant -> (the class its middleware switches to, what it runs)
PARTS: dict[str, tuple[type[_SampledMiddleware], str]] = {
    "passive_floor": (_Floor, "the continuous middleware's class, passing straight through"),
    "passive_checks": (_Checks, "+ entry checks and clock"),
    "passive_holder": (_Holder, "+ the holder list"),
    "passive_ctx": (_Ctx, "+ holder and context variable, no send wrapper"),
    "passive_watch": (_Watch, "+ holder and send wrapper, no context variable"),
    "passive_path": (_SampledMiddleware, "the real passive path (no ticks)"),
    "passive_1hz": (_SampledMiddleware, "the real passive path, ticks at 1 Hz"),
}

DESCRIPTIONS = {name: what for name, (_, what) in PARTS.items()}


def build(name: str) -> FastAPI:
    """The hello-world app whose continuous middleware runs part ``name``."""
    part = PARTS[name][0]

    class Ablated(FastprofMiddleware):
        __slots__ = ()

        def _hook(self, *, passive: bool) -> None:
            super()._hook(passive=passive)  # switches to _SampledMiddleware if it can
            if isinstance(self, _SampledMiddleware):
                object.__setattr__(self, "__class__", part)

    interval = 0.01
    if name == "passive_1hz":
        interval = 1.0
    else:
        held: Callable[[], float] = lambda: HELD_OFF  # noqa: E731 - replaces a method
        Sampler.shared()._next_delay = held  # type: ignore[method-assign]
    app = _hello()
    app.add_middleware(Ablated, backend="continuous", continuous_interval=interval)
    app.middleware_stack = app.build_middleware_stack()
    return app


_built: dict[str, FastAPI] = {}


def __getattr__(name: str) -> Any:
    if name in PARTS:
        if name not in _built:
            _built[name] = build(name)
        return _built[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
