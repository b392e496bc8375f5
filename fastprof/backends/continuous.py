"""An always-on, low-rate sampler that attributes every sample to the request it belongs to.

One background thread per process wakes ``1/interval`` times a second (100 Hz by default) and
reads every thread's current frame (``sys._current_frames()``). A sample of an event-loop thread
belongs to the request whose task the loop is running at that moment (``asyncio.current_task``
mapped to the request's capture); a sample of a worker thread belongs to the request that handed
it the work (the threadpool hook registers the thread for the duration of the call). Nothing runs
in the request's own path but a few dictionary writes, so it can cover all traffic: per-route
trees come from 100% of requests, and a slow request's samples are there when it turns out slow.

Limits: tasks a request spawns itself (``asyncio.gather``, ``create_task``) are not mapped, so
their samples are dropped; time when the request was not running (awaiting I/O, or waiting for
the loop) is not sampled and is reported as await time on the tree's root.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

from fastprof._frames import code_key
from fastprof.backends.base import Backend, Capture, TreeSource
from fastprof.model import CallTree, FrameKey

T = TypeVar("T")

# One sample: (weight in seconds, frame-key prefix, code objects outermost first)
Sample = tuple[float, tuple[FrameKey, ...], tuple[CodeType, ...]]


class ContinuousBackend(Backend):
    """The process-wide low-rate sampler. ``interval`` defaults to 0.01 s (100 Hz)."""

    name = "continuous"

    def __init__(self, *, interval: float = 0.01) -> None:
        super().__init__(interval=interval)
        self.sampler = Sampler.shared(interval)

    def start(self, anchor: FrameType | None, *, is_async: bool) -> Capture:
        return SampledCapture(self.sampler, anchor)

    def close(self) -> None:
        self.sampler.stop()


class SampledCapture(Capture):
    __slots__ = ("sampler", "samples", "started", "task")

    def __init__(self, sampler: Sampler, anchor: FrameType | None) -> None:
        super().__init__(anchor)
        self.sampler = sampler
        self.samples: list[Sample] = []
        self.started = time.perf_counter()
        self.task = sampler.add_task(self)

    def stop(self) -> TreeSource:
        self.sampler.remove_task(self.task)
        duration = time.perf_counter() - self.started
        samples, self.samples = self.samples, []
        interval = self.sampler.interval
        return TreeSource(lambda: build_tree(samples, duration, interval))

    def wrap_thread(self, func: Callable[..., T], path: list[Any]) -> Callable[..., T]:
        sampler = self.sampler
        prefix = tuple(path)

        def run_sampled(*args: Any, **kwargs: Any) -> T:
            ident = sampler.add_thread(self, prefix, sys._getframe())
            try:
                return func(*args, **kwargs)
            finally:
                sampler.remove_thread(ident)

        return run_sampled


_key_cache: dict[CodeType, FrameKey] = {}


def samples_into(tree: CallTree, samples: list[Sample]) -> float:
    """Add ``samples`` to ``tree``; return the sampled seconds."""
    sampled = 0.0
    cache = _key_cache
    for weight, prefix, codes in samples:
        keys = list(prefix)
        for code in codes:
            key = cache.get(code)
            if key is None:
                key = cache[code] = code_key(code)
            keys.append(key)
        tree.add_stack(keys, weight)
        sampled += weight
    return sampled


def build_tree(samples: list[Sample], duration: float, interval: float) -> CallTree:
    tree = CallTree(backend="continuous", duration=duration, interval=interval)
    tree.meta["sample_count"] = len(samples)
    sampled = samples_into(tree, samples)
    # Not running on the sampled threads: awaiting, or queued behind other work.
    rest = duration - sampled
    if rest > 0:
        tree.root.await_time += rest
        tree.root.total += rest
    return tree


class Sampler:
    """The sampling thread. Runs only while some capture is registered."""

    _shared: dict[float, Sampler] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, interval: float) -> Sampler:
        with cls._shared_lock:
            sampler = cls._shared.get(interval)
            if sampler is None:
                sampler = cls._shared[interval] = cls(interval)
            return sampler

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.ticks = 0
        self._tasks: dict[Any, SampledCapture] = {}
        self._loops: dict[asyncio.AbstractEventLoop, int] = {}
        self._threads: dict[int, tuple[SampledCapture, tuple[FrameKey, ...], FrameType]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- registration (called on the loop thread / worker threads) ---------------------------
    def add_task(self, capture: SampledCapture) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # not in async code: worker-thread samples only
        task = asyncio.current_task(loop)
        if loop not in self._loops:
            self._loops[loop] = threading.get_ident()
        self._tasks[task] = capture
        if self._thread is None:
            self._ensure_thread()
        return task

    def remove_task(self, task: Any) -> None:
        self._tasks.pop(task, None)

    def add_thread(
        self, capture: SampledCapture, prefix: tuple[FrameKey, ...], anchor: FrameType
    ) -> int:
        ident = threading.get_ident()
        self._threads[ident] = (capture, prefix, anchor)
        if self._thread is None:
            self._ensure_thread()
        return ident

    def remove_thread(self, ident: int) -> None:
        self._threads.pop(ident, None)

    # -- the thread ----------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="fastprof-sampler", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread now (it also stops by itself after a second with nothing to do)."""
        with self._lock:
            thread, self._stopping = self._thread, True
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        interval = self.interval
        idle_since: float | None = None
        last = time.perf_counter()
        while True:
            time.sleep(interval)
            now = time.perf_counter()
            weight, last = now - last, now
            if self._tasks or self._threads:
                idle_since = None
                # never let the sampler die loudly: a bad tick is a lost sample
                with contextlib.suppress(Exception):
                    self.sample(weight)
            elif idle_since is None:
                idle_since = now
            with self._lock:
                if self._stopping or (idle_since is not None and now - idle_since > 1.0):
                    self._thread = None
                    return

    def sample(self, weight: float) -> None:
        """Take one sample of every registered loop and worker thread."""
        self.ticks += 1
        frames = sys._current_frames()
        for loop, ident in list(self._loops.items()):
            if loop.is_closed():
                del self._loops[loop]
                continue
            task = asyncio.current_task(loop)
            capture = self._tasks.get(task) if task is not None else None
            frame = frames.get(ident)
            if capture is None or frame is None:
                continue
            codes = _walk(frame, capture.anchor)
            if codes is not None:
                capture.samples.append((weight, (), codes))
        for ident, (capture, prefix, anchor) in list(self._threads.items()):
            frame = frames.get(ident)
            if frame is None:
                continue
            codes = _walk(frame, anchor)
            if codes is not None:
                capture.samples.append((weight, prefix, codes))


def _walk(frame: FrameType | None, anchor: FrameType | None) -> tuple[CodeType, ...] | None:
    """Code objects from just below ``anchor`` down to ``frame``; None if anchor not on stack."""
    codes: list[CodeType] = []
    while frame is not None:
        if frame is anchor:
            codes.reverse()
            return tuple(codes)
        codes.append(frame.f_code)
        frame = frame.f_back
    return None if anchor is not None else tuple(reversed(codes))
