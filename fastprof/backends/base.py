"""The contract every backend implements.

A :class:`Backend` is created once (per middleware or per ``profile()``) and starts one
:class:`Capture` per profiled request or block. ``Capture.stop()`` returns a :class:`TreeSource`:
converting raw samples into a :class:`~fastprof.model.CallTree` is deferred until someone looks,
so a request whose profile is never read pays only for collecting it.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar, TypeVar

from fastprof.model import CallTree

T = TypeVar("T")

logger = logging.getLogger("fastprof")


class TreeSource:
    """A call tree built on first access (and then kept)."""

    __slots__ = ("_build", "_lock", "_tree")

    def __init__(self, build: Callable[[], CallTree]) -> None:
        self._build: Callable[[], CallTree] | None = build
        self._tree: CallTree | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, tree: CallTree) -> TreeSource:
        source = cls(lambda: tree)
        source._tree, source._build = tree, None
        return source

    def get(self) -> CallTree:
        if self._tree is None:
            with self._lock:
                if self._tree is None and self._build is not None:
                    self._tree, self._build = self._build(), None
        assert self._tree is not None
        return self._tree


class Capture(ABC):
    """One running capture of one request or block."""

    __slots__ = ("__dict__", "anchor")

    def __init__(self, anchor: FrameType | None) -> None:
        #: The frame that started the capture; frames at and above it are not in the tree.
        self.anchor = anchor

    @abstractmethod
    def stop(self) -> TreeSource:
        """Stop capturing; called exactly once, on the thread and context that started it."""

    def wrap_thread(self, func: Callable[..., T], path: list[Any]) -> Callable[..., T]:
        """Wrap ``func`` (about to run in a worker thread on this capture's behalf).

        ``path`` is the stack, outermost first and below the capture's anchor, of the code that
        handed the work over; the thread's frames belong under it.
        """
        return func

    def log_failure(self, what: str) -> None:
        """Log (with traceback) a failure inside fastprof; the app's work goes on."""
        logger.exception(
            "fastprof: %s failed in %s; the request continues", what, type(self).__name__
        )


class Backend(ABC):
    """A way of capturing call trees. Subclass, give it a ``name``, register it in BACKENDS."""

    name: ClassVar[str]
    #: True when a capture sees the whole process rather than one request.
    whole_process: ClassVar[bool] = False

    def __init__(self, *, interval: float = 0.001) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self.interval = interval

    @abstractmethod
    def start(self, anchor: FrameType | None, *, is_async: bool) -> Capture:
        """Begin capturing the current request or block.

        ``anchor`` is the frame that called ``start`` (the middleware's or ``profile()``'s own
        frame); frames at and above it are not part of the tree. ``is_async`` says whether the
        capture spans ``await`` points (then only the current context's time may count).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release process-wide resources (sampler threads, global profiler hooks)."""


class BackendUnavailable(RuntimeError):
    """The backend's optional dependency is missing or cannot run here."""
