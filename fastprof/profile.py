"""``profile()``: profile any block of code or function, inside an app or on its own.

One object works four ways (the overload pattern of pyinstrument's ``context_manager.py``)::

    with profile("rebuild index") as p:
        rebuild()
    print(p.text())

    async with profile() as p:
        await fetch_all()

    @profile
    def handler(): ...

    @profile(label="load", interval=0.0005)
    async def load(): ...

Inside a request served through :class:`~fastprof.FastprofMiddleware` the result is attached to
that request's record (``ProfileRecord.blocks``); a decorated function called outside any request
prints its tree to stderr unless ``print=False``. Blocks nest.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import IO, Any, TypeVar, overload

from fastprof import _threadpool
from fastprof._context import current_capture, current_request
from fastprof.backends import Backend, Capture, make_backend
from fastprof.model import CallTree

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True, eq=False)
class ProfileResult:
    """The outcome of one profiled block."""

    label: str
    duration: float
    tree: CallTree

    def text(self, **options: Any) -> str:
        from fastprof.renderers import render

        return render(self.tree, "text", title=self.label, **options)

    def html(self) -> str:
        from fastprof.renderers import render

        return render(self.tree, "html", title=self.label)

    def speedscope(self) -> str:
        from fastprof.renderers import render

        return render(self.tree, "speedscope", title=self.label)

    def collapsed(self) -> str:
        from fastprof.renderers import render

        return render(self.tree, "collapsed")


class _Running:
    __slots__ = ("capture", "outer", "started", "token")

    def __init__(self, capture: Capture, outer: Capture | None, started: float) -> None:
        self.capture = capture
        self.outer = outer
        self.started = started
        self.token = current_capture.set(capture)


class profile:
    """Profile a block (``with``/``async with``) or every call of a function (decorator).

    :param label: a name for the result (default: the function name or ``file:line``).
    :param backend: a backend name (``"pyinstrument"``, ``"yappi"``, ...) or Backend class.
    :param interval: sampling interval in seconds, for sampling backends.
    :param print: for decorated functions called outside a request: print the tree to stderr
        (or to the given file) after each call.
    """

    def __new__(cls, label: str | Callable[..., Any] | None = None, **options: Any) -> Any:
        if callable(label):  # bare @profile: hand back the wrapped function itself
            instance = super().__new__(cls)
            instance.__init__(None, **options)  # type: ignore[misc]
            return instance(label)
        return super().__new__(cls)

    def __init__(
        self,
        label: str | None = None,
        *,
        backend: str | type[Backend] | Backend = "pyinstrument",
        interval: float = 0.001,
        print: bool | IO[str] = True,
    ) -> None:
        self.label = "" if label is None else str(label)
        self.backend = make_backend(backend, interval=interval)
        self.print = print
        self.result: ProfileResult | None = None
        #: Results of the last calls of a decorated function (newest last).
        self.results: deque[ProfileResult] = deque(maxlen=16)
        self._stack: list[_Running] = []

    # -- results ---------------------------------------------------------------------------
    @property
    def tree(self) -> CallTree:
        return self._last().tree

    def text(self, **options: Any) -> str:
        return self._last().text(**options)

    def html(self) -> str:
        return self._last().html()

    def speedscope(self) -> str:
        return self._last().speedscope()

    def _last(self) -> ProfileResult:
        if self.result is None:
            raise RuntimeError("nothing profiled yet: the block or function has not finished")
        return self.result

    # -- context manager -------------------------------------------------------------------
    # The block's own function is the tree's first frame: the anchor is its caller.
    def __enter__(self) -> profile:
        self._stack.append(self._begin(sys._getframe(1).f_back, is_async=False))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end(self._stack.pop(), default_label=None)

    async def __aenter__(self) -> profile:
        self._stack.append(self._begin(sys._getframe(1).f_back, is_async=True))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end(self._stack.pop(), default_label=None)

    def _begin(self, anchor: FrameType | None, *, is_async: bool) -> _Running:
        outer = current_capture.get()
        capture = self.backend.start(anchor, is_async=is_async)
        _threadpool.acquire()
        return _Running(capture, outer, time.perf_counter())

    def _end(self, running: _Running, default_label: str | None) -> ProfileResult:
        try:
            source = running.capture.stop()
        finally:
            _threadpool.release()
            current_capture.reset(running.token)
        duration = time.perf_counter() - running.started
        anchor = running.capture.anchor
        label = self.label or default_label or _describe(anchor)
        result = ProfileResult(label, duration, source.get())
        state = current_request.get()
        if state is not None:
            state.blocks.append(result)
        self.result = result
        self.results.append(result)
        return result

    # -- decorator -------------------------------------------------------------------------
    @overload
    def __call__(self, func: F) -> F: ...
    @overload
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        (func,) = args
        name = getattr(func, "__qualname__", repr(func))

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*a: Any, **kw: Any) -> Any:
                running = self._begin(sys._getframe(), is_async=True)
                try:
                    return await func(*a, **kw)
                finally:
                    self._report(self._end(running, default_label=name))

            async_wrapper.fastprof = self  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            running = self._begin(sys._getframe(), is_async=False)
            try:
                return func(*a, **kw)
            finally:
                self._report(self._end(running, default_label=name))

        wrapper.fastprof = self  # type: ignore[attr-defined]
        return wrapper

    def _report(self, result: ProfileResult) -> None:
        if self.print is False or current_request.get() is not None:
            return
        out = sys.stderr if self.print is True else self.print
        out.write(result.text())
        out.flush()


def _describe(frame: FrameType | None) -> str:
    if frame is None:
        return "profile"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
