"""An always-on, low-rate sampler that attributes every sample to the request it belongs to.

One background thread per process wakes ``1/interval`` times a second (100 Hz by default) and
reads every thread's current frame (``sys._current_frames()``). A sample of an event-loop thread
belongs to the request whose task the loop is running at that moment (``asyncio.current_task``
mapped to the request's capture); a sample of a worker thread belongs to the request that handed
it the work (the threadpool hook registers the thread for the duration of the call). The request's
own path makes only a small holder, sets a context variable and wraps ``send`` (about 7-10 us a
request, docs/performance.md), so it can cover all traffic: per-route trees come from 100% of
requests, and a slow request's samples are there when it turns out slow.

A request that is suspended at a tick is sampled too, as await time on the frame it is awaiting
in: its task's coroutine chain (``cr_await``) says where, without running it.

Limits: tasks a request spawns itself (``asyncio.gather``, ``create_task``) are not mapped, so
their samples are dropped; time no tick saw (a request shorter than the interval) is reported
as await time on the tree's root.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import CodeType, CoroutineType, FrameType
from typing import Any, TypeVar

from fastprof._context import current_capture, current_sampled, task_context
from fastprof._frames import code_key
from fastprof.backends.base import Backend, Capture, TreeSource
from fastprof.model import CallTree, FrameKey

T = TypeVar("T")

#: Suspended requests whose await chain one tick walks at most (the rest are estimated).
#: Each one drawn costs the tick a walk down its await chain and, when it ends, its request
#: the end of a capture. 2 was tried: a request suspended for 70 ms among 20 then went
#: unsampled about one time in thirty, and tests/test_isolation.py failed (docs/performance.md).
MAX_AWAIT_SAMPLES = 4

#: Seconds between the signal timer's ticks while no capture is registered (it lingers for a
#: second before it disarms, and a new capture brings the interval back at once).
IDLE_DELAY = 0.1

#: Seconds the timer keeps its interval after it last saw a passive request (SampledRequest).
#: A tick that lands between two requests sees none; slowing down there made the next request
#: wake the timer, and the ticks then fell at a fixed phase of each request: a 70/30 split
#: measured 0.59 (a CI run).
PASSIVE_LINGER = 0.2

#: Tasks one tick looks through for a request in flight, when the few it drew had none.
MAX_TASKS_SCANNED = 256

# One sample: (weight in seconds, frame-key prefix, code objects outermost first, awaiting)
Sample = tuple[float, tuple[FrameKey, ...], tuple[CodeType, ...], bool]


#: A request the sampler finds by itself: no registration, so it costs its request this
#: holder and a context variable (``FastprofMiddleware``'s continuous mode, when the timer ticks
#: by signal on the loop's thread). A plain list ``[backend, capture, status, nbytes]``
#: (indexes below): the middleware makes one per request, and a list display is the cheapest
#: object there is - a class with an ``__init__`` costs a Python call from C, and with the
#: ``send`` wrapper's object it cost about 0.3 us a request more (docs/performance.md).
#:
#: The request sets ``fastprof._context.current_sampled`` to it for as long as it runs. A tick
#: finds the running request in the context it interrupted (a task the request spawned runs in
#: a copy of it), and a suspended one in its middleware frame's local ``sampled``; the first
#: sample creates the capture (:meth:`Sampler.promote`), and the request sets it to False when
#: it ends, so that no tick starts one after. The middleware's ``send`` wrapper writes the
#: response's status and body size into it.
#:
#: It holds nothing of the request's own (no ``send``, no scope): copies of the context taken
#: during the request (the loop's callbacks take one each) outlive it, and what the value holds
#: lives as long. Holding the response wrapper kept the server's per-request objects alive that
#: long, and the server ran a garbage collection every 36 requests instead of every 2,600.
SampledRequest = list[Any]  # [ContinuousBackend, SampledCapture | False | None, int, int]
BACKEND, CAPTURE, STATUS, NBYTES = 0, 1, 2, 3


class ContinuousBackend(Backend):
    """The process-wide low-rate sampler. ``interval`` defaults to 0.01 s (100 Hz)."""

    name = "continuous"

    def __init__(self, *, interval: float = 0.01) -> None:
        super().__init__(interval=interval)
        self.sampler = Sampler.shared()
        self.in_use = self.sampler.in_use(interval)

    def start(self, anchor: FrameType | None, *, is_async: bool) -> SampledCapture:
        return SampledCapture(self, anchor)

    def close(self) -> None:
        self.sampler.stop()


class SampledCapture(Capture):
    __slots__ = (
        "in_threads",
        "in_use",
        "interval",
        "sampler",
        "samples",
        "started",
        "task",
        "thread",
    )

    def __init__(self, backend: ContinuousBackend, anchor: FrameType | None) -> None:
        # Built for every request of the continuous mode: Capture.__init__ (it only sets the
        # anchor) is inlined, one call less.
        self.anchor = anchor
        self.sampler = sampler = backend.sampler
        #: Created with the first sample: most requests of the continuous mode have none.
        self.samples: list[Sample] | None = None
        #: Worker threads running for this request right now (its task is waiting for them).
        self.in_threads = 0
        self.interval = backend.interval
        self.in_use = backend.in_use
        self.started = time.perf_counter()
        self.task = task = sampler.add_task(self)
        # Outside async code (a sync profile() block on any thread) the thread is sampled.
        self.thread = sampler.add_thread(self, (), anchor) if task is None else None

    @classmethod
    def unregistered(
        cls, backend: ContinuousBackend, anchor: FrameType | None, started: float
    ) -> SampledCapture:
        """A capture for a request the sampler finds by itself (see :class:`SampledRequest`):
        nothing is registered, so :meth:`detach` only hands the samples over."""
        capture = cls.__new__(cls)
        capture.anchor = anchor
        capture.sampler = backend.sampler
        capture.samples = None
        capture.in_threads = 0
        capture.interval = backend.interval
        capture.in_use = backend.in_use
        capture.started = started
        capture.task = None
        capture.thread = None
        return capture

    def add(self, sample: Sample) -> None:
        """Called by the sampler."""
        if self.samples is None:
            self.samples = [sample]
        else:
            self.samples.append(sample)

    def detach(self) -> Sequence[Sample]:
        """Stop sampling this capture; its samples so far (the cheap half of ``stop``)."""
        if self.task is not None:
            self.sampler.remove_task(self.task)
        if self.thread is not None:
            self.sampler.remove_thread(self.thread, self)
        samples, self.samples = self.samples, None
        return samples if samples is not None else ()

    def tree_source(self, samples: Sequence[Sample], duration: float) -> TreeSource:
        interval = self.interval
        return TreeSource(lambda: build_tree(samples, duration, interval))

    def stop(self) -> TreeSource:
        samples = self.detach()
        return self.tree_source(samples, time.perf_counter() - self.started)

    def wrap_thread(self, func: Callable[..., T], path: list[Any]) -> Callable[..., T]:
        sampler = self.sampler
        prefix = tuple(path)

        def run_sampled(*args: Any, **kwargs: Any) -> T:
            _keep_sigalrm_off_this_thread()
            ident = sampler.add_thread(self, prefix, sys._getframe())
            self.in_threads += 1
            try:
                return func(*args, **kwargs)
            finally:
                self.in_threads -= 1
                sampler.remove_thread(ident, self)

        return run_sampled


_key_cache: dict[CodeType, FrameKey] = {}


def samples_into(tree: CallTree, samples: Iterable[Sample]) -> float:
    """Add ``samples`` to ``tree``; return the sampled seconds."""
    sampled = 0.0
    cache = _key_cache
    for weight, prefix, codes, awaiting in samples:
        keys = list(prefix)
        for code in codes:
            key = cache.get(code)
            if key is None:
                key = cache[code] = code_key(code)
            keys.append(key)
        tree.add_stack(keys, weight, awaiting=awaiting)
        sampled += weight
    return sampled


def build_tree(samples: Sequence[Sample], duration: float, interval: float) -> CallTree:
    tree = CallTree(backend="continuous", duration=duration, interval=interval)
    tree.meta["sample_count"] = len(samples)
    sampled = samples_into(tree, samples)
    # Not running on the sampled threads: awaiting, or queued behind other work.
    rest = duration - sampled
    if rest > 0:
        tree.root.await_time += rest
        tree.root.total += rest
    return tree


class InUse:
    """How many captures at one interval are registered now: the tick follows the finest
    interval in use. A counter object each capture holds, so that registering one (every
    request, in the continuous mode) is an increment - no dictionary keyed by a float."""

    __slots__ = ("count", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.count = 0


class Sampler:
    """Takes the samples. Runs only while some capture is registered.

    Two ways to tick, chosen when sampling starts:

    * ``"signal"`` (on the main thread, when nobody else owns ``SIGALRM``): a wall-clock
      interval timer (``ITIMER_REAL``). The handler runs on the main thread between two
      bytecodes - exactly where the loop is - and wakes a loop blocked in ``select()`` too, so
      suspended requests are sampled while they wait. Disarmed after a second with no request.
    * ``"thread"`` (anywhere else): a daemon thread that sleeps ``interval`` and samples.

    Why not always a thread: under asyncio the loop thread releases and retakes the GIL at every
    ``select()``; CPython then never hands the GIL to a waiting thread (its switch request is
    reset by each voluntary switch), so a sampler thread starves exactly when the server is busy
    (measured here: 0 ticks in 0.3 s next to a busy loop, against 30 next to plain code).
    """

    _shared: Sampler | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls) -> Sampler:
        """The process's sampler (one ``SIGALRM`` timer serves every interval)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __init__(self) -> None:
        #: The tick interval: the finest of the registered captures' intervals.
        self.interval = 0.01
        self._in_use: dict[float, InUse] = {}
        self._counters: tuple[InUse, ...] = ()
        self.ticks = 0
        self._tasks: dict[Any, SampledCapture] = {}
        # loop -> the thread running it, and back
        self._loops: dict[asyncio.AbstractEventLoop, int] = {}
        self._loop_of: dict[int, asyncio.AbstractEventLoop] = {}
        # thread -> the captures sampling it (sync blocks nest: several per thread)
        self._threads: dict[
            int, list[tuple[SampledCapture, tuple[FrameKey, ...], FrameType | None]]
        ] = {}
        # Re-entrant: the SIGALRM handler may run while the main thread holds it.
        self._lock = threading.RLock()
        self._mode: str | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._idle_since: float | None = None
        self._last = 0.0
        rng = random.Random()
        self._random = rng.random
        self._sample_of = rng.sample
        #: Holders of passive requests (:class:`SampledRequest`), and the code of the frame a
        #: passive request's samples start below (the middleware's ``__call__``).
        self._passive = 0
        self._passive_seen = 0.0  # when a tick last saw one (perf_counter)
        self._passive_intervals: list[float] = []
        self._anchor_codes: frozenset[CodeType] = frozenset()
        #: Their ids: a tick tests every frame of a chain, and a code object's hash is
        #: computed from its whole content each time (an int's is free).
        self._anchor_ids: frozenset[int] = frozenset()
        #: True while the signal timer ticks at its interval: passive requests read it to
        #: know whether to wake it (:meth:`wake_passive`).
        self.armed = False

    # -- registration (called on the loop thread / worker threads) ---------------------------
    def add_task(self, capture: SampledCapture) -> Any:
        """Register the current task for ``capture``; the task, or None outside async code.

        Called once per request in the continuous mode, so it avoids
        ``asyncio.get_running_loop()`` (which makes a ``getpid()`` system call each time): the
        loop last seen on this thread is asked for its current task first. A task found that way
        is running on this thread now - a loop runs on one thread at a time, and one that runs
        elsewhere is re-registered under that thread when it is first seen there.
        """
        loop = self._loop_of.get(_get_ident())
        task = _current_task(loop) if loop is not None else None
        if task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None  # not in async code: worker-thread samples only
            task = _current_task(loop)
            if task is None:
                return None
            self._note_loop(loop)
        self._tasks[task] = capture
        in_use = capture.in_use
        in_use.count += 1
        if in_use.count == 1:
            self._retick()
        if self._mode is None:
            self._start()
        elif self._idle_since is not None:
            self._wake()
        return task

    def _note_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        ident = _get_ident()
        before = self._loops.get(loop)
        if before is not None and before != ident and self._loop_of.get(before) is loop:
            del self._loop_of[before]
        self._loops[loop] = ident
        self._loop_of[ident] = loop

    def remove_task(self, task: Any) -> None:
        capture = self._tasks.pop(task, None)
        if capture is not None:
            in_use = capture.in_use
            in_use.count -= 1
            if in_use.count <= 0:
                self._retick()

    def in_use(self, interval: float) -> InUse:
        """The counter of captures registered at ``interval`` (one per interval, kept)."""
        with self._lock:
            counter = self._in_use.get(interval)
            if counter is None:
                counter = self._in_use[interval] = InUse(interval)
                self._counters = tuple(self._in_use.values())
            return counter

    def _retick(self) -> None:
        """An interval came into use or went out of it: tick at the finest one in use."""
        counters = self._counters
        if len(counters) == 1:  # one interval in the process, as usual: nothing to choose
            self.interval = counters[0].interval
            return
        used = [c.interval for c in counters if c.count > 0]
        if used:
            self.interval = min(used)

    # -- passive requests (SampledRequest) ----------------------------------------------------
    def add_passive(self, anchor_codes: frozenset[CodeType], in_use: InUse) -> bool:
        """Let the sampler find requests by itself from now on (until :meth:`remove_passive`):
        True when it can - it ticks by signal on this thread, the main one. False: register
        each request instead (``ContinuousBackend.start``)."""
        with self._lock:
            if threading.current_thread() is not threading.main_thread():
                return False
            if self._mode == "thread" or (self._mode is None and not _can_use_sigalrm()):
                return False
            self._anchor_codes = self._anchor_codes | anchor_codes
            self._anchor_ids = frozenset(map(id, self._anchor_codes))
            self._passive += 1
            self._passive_intervals.append(in_use.interval)
            in_use.count += 1  # held: the timer follows this interval while traffic flows
            if in_use.count == 1:
                self._retick()
            return True

    def remove_passive(self, in_use: InUse) -> None:
        with self._lock:
            if in_use.interval in self._passive_intervals:
                self._passive -= 1
                self._passive_intervals.remove(in_use.interval)
                in_use.count -= 1
                if in_use.count <= 0:
                    self._retick()

    def wake_passive(self) -> bool:
        """A passive request found the timer stopped or idling: tick at the interval again.
        False when the sampler now ticks from a thread, where passive requests are not seen
        (the request registers instead)."""
        if self._mode is None:
            self._start()
        elif self._idle_since is not None:
            self._wake()
        return self._mode == "signal"

    def promote(self, request: SampledRequest, anchor: FrameType | None) -> SampledCapture:
        """The capture of a passive request, created when it is first needed."""
        capture = SampledCapture.unregistered(request[BACKEND], anchor, time.perf_counter())
        request[CAPTURE] = capture
        return capture

    def passive_capture(self, caller: FrameType | None) -> SampledCapture | None:
        """The capture of the passive request running here (None: none is), for the thread
        hook: work handed to a worker thread is sampled there (``wrap_thread``)."""
        request = current_sampled.get()
        if request is None or request[CAPTURE] is False:
            return None
        capture: SampledCapture | None = request[CAPTURE]
        if capture is None:
            capture = self.promote(request, self._above_anchor(caller)[0])
        return capture

    def _above_anchor(
        self, frame: FrameType | None
    ) -> tuple[FrameType | None, tuple[CodeType, ...] | None]:
        """The innermost anchor frame (a passive request's middleware) on ``frame``'s stack,
        and the codes from just below it down to ``frame``; in a task the request spawned, no
        anchor and the codes below the task's first step, under a "<spawned task>" marker;
        (None, None) when neither is on the stack."""
        ids = self._anchor_ids
        codes: list[CodeType] = []
        while frame is not None:
            code = frame.f_code
            if id(code) in ids:
                codes.reverse()
                return frame, tuple(codes)
            if code is _TASK_STEP:
                codes.reverse()
                return None, (_SPAWNED, *codes)
            codes.append(code)
            frame = frame.f_back
        return None, None

    def _below_anchor(self, task: Any) -> tuple[Any, tuple[CodeType, ...]]:
        """The innermost anchor coroutine of ``task``'s await chain (None if there is none),
        and the code objects of the chain below it (reading codes, not frames: see
        ``_awaiting``)."""
        anchors = self._anchor_ids
        anchor = None
        codes: list[CodeType] = []
        awaitable = task.get_coro()
        code: CodeType | None
        while awaitable is not None:
            if type(awaitable) is _Coroutine:  # nearly every link: no getattr with a default
                code = awaitable.cr_code
                inner = awaitable.cr_await
            else:
                code = getattr(awaitable, "cr_code", None) or getattr(awaitable, "gi_code", None)
                if code is None:
                    break
                inner = getattr(awaitable, "cr_await", None) or getattr(
                    awaitable, "gi_yieldfrom", None
                )
            if id(code) in anchors:
                anchor = awaitable
                codes = []
            elif anchor is not None:
                codes.append(code)
            awaitable = inner
        return anchor, tuple(codes)

    def add_thread(
        self, capture: SampledCapture, prefix: tuple[FrameKey, ...], anchor: FrameType | None
    ) -> int:
        ident = threading.get_ident()
        self._threads.setdefault(ident, []).append((capture, prefix, anchor))
        in_use = capture.in_use
        in_use.count += 1
        if in_use.count == 1:
            self._retick()
        if self._mode is None:
            self._start()
        elif self._idle_since is not None:
            self._wake()
        return ident

    def remove_thread(self, ident: int, capture: SampledCapture) -> None:
        entries = self._threads.get(ident, [])
        for index, entry in enumerate(entries):
            if entry[0] is capture:
                del entries[index]
                in_use = capture.in_use
                in_use.count -= 1
                if in_use.count <= 0:
                    self._retick()
                break
        if not entries:
            self._threads.pop(ident, None)

    # -- ticking ---------------------------------------------------------------------------
    @property
    def mode(self) -> str | None:
        """``"signal"``, ``"thread"``, or None when not sampling."""
        return self._mode

    @property
    def running(self) -> bool:
        return self._mode is not None

    def _start(self) -> None:
        with self._lock:
            if self._mode is not None:
                return
            self._idle_since = None
            self._last = time.perf_counter()
            if _can_use_sigalrm():
                # Disarm before the interpreter restores default handlers at exit: a SIGPROF
                # arriving after that would kill the process ("Alarm clock").
                _register_atexit(self)
                signal.signal(signal.SIGALRM, self._on_signal)
                signal.setitimer(signal.ITIMER_REAL, self._next_delay())
                self._mode = "signal"
                self.armed = True
                return
            self._stopping = False
            self._mode = "thread"
            self._thread = threading.Thread(target=self._run, name="fastprof-sampler", daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        """A capture arrived while the signal timer idles at ``IDLE_DELAY``: tick at the
        interval again now.

        Idle ticks at the interval cost every request: at a 1% sample rate under load the
        sampler is never idle for a whole second, so a 1 kHz timer ran all the time (measured
        with bench/hotpath.py at 32 requests in flight: about 950 ticks a second; about 300,
        those of sampled requests, with the slow idle pace).
        """
        with self._lock:
            if self._mode != "signal" or self._idle_since is None:
                return  # the thread sleeps one interval at a time: it wakes soon enough
            self._idle_since = None
            self._last = time.perf_counter()  # the next tick's gap starts now, not at the last
            signal.setitimer(signal.ITIMER_REAL, self._next_delay())
            self.armed = True

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sampling now (it also stops by itself after a second with nothing to do)."""
        with self._lock:
            mode, thread = self._mode, self._thread
            self._stopping = True
            if mode == "signal":
                self._disarm()
        if thread is not None:
            thread.join(timeout)

    def _disarm(self) -> None:
        # Not in signal mode first: a tick landing in here (the handler takes the re-entrant
        # lock on this same thread) then returns instead of re-arming the timer after it was
        # stopped (seen once in CI: "ITIMER_REAL left armed").
        self._mode = None
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
        # else: the handler stays installed but no timer fires it; the next start re-arms

    def _tick(self, main_frame: FrameType | None) -> bool:
        """One tick; False when it is time to stop (idle for a second)."""
        now = time.perf_counter()
        gap, self._last = now - self._last, now
        # A tick can come late - the handler waits for the GIL while a worker thread computes
        # (up to the 5 ms switch interval) - and that time is real. A gap far beyond that is a
        # pause (the timer was re-armed, the process stopped): don't charge it.
        if gap > max(20 * self.interval, 0.05):
            gap = self.interval
        if self._tasks or self._threads or self._passive:
            # Never let the sampler fail loudly: a bad tick is a lost sample. (A try, not
            # contextlib.suppress: the context manager's two calls cost every tick.)
            try:
                seen = self.sample(gap, main_frame)
            except Exception:
                return True
            if seen:
                self._passive_seen = now
            if seen is None and self._idle_since is None:
                return True  # no passive request looked at this tick: nothing learnt
            if (
                seen
                or self._tasks
                or self._threads
                or (self._passive and now - self._passive_seen < PASSIVE_LINGER)
            ):
                self._idle_since = None
                self.armed = self._mode == "signal"
                return True
        if self._idle_since is None:
            self._idle_since = now
            self.armed = False
        return now - self._idle_since <= 1.0

    def _next_delay(self) -> float:
        # Jittered (uniform 0.5-1.5 intervals, same mean): a fixed period aliases with
        # periodic work - seen here as a 70/30 split measured as 81/19.
        return self.interval * (0.5 + self._random())

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        keep = self._tick(frame)
        with self._lock:
            if self._mode != "signal":
                return
            if keep:
                delay = self._next_delay()
                if self._idle_since is not None:
                    delay = max(delay, IDLE_DELAY)
                signal.setitimer(signal.ITIMER_REAL, delay)
            else:
                self._disarm()

    def _run(self) -> None:
        while True:
            time.sleep(self._next_delay())
            keep = self._tick(None)
            with self._lock:
                if self._stopping or not keep:
                    self._thread = None
                    self._mode = None
                    return

    def sample(self, gap: float, main_frame: FrameType | None = None) -> bool | None:
        """One tick, ``gap`` seconds after the previous one: sample the registered captures.

        The timer ticks at the finest interval registered. A capture with a coarser interval
        is sampled at a tick with probability ``gap / interval`` and its sample then weighs
        ``interval`` seconds - in expectation exactly the ``gap`` it stands for, so every
        capture's tree estimates its time without bias at its own rate. ``main_frame``: the
        main thread's frame as a signal handler sees it (the handler's own frames are on top of
        the main thread's stack in ``sys._current_frames()``).

        Returns whether a passive request (:class:`SampledRequest`) was in flight, or None when
        this tick did not look for them.
        """
        self.ticks += 1
        chance = self._random

        def weight(interval: float) -> float:
            """The sample's weight at ``interval``, or 0.0 when this tick skips it."""
            if gap >= interval:
                return gap
            return interval if chance() * interval < gap else 0.0

        # Registered captures only: the passive requests' ticks need no other thread's frame.
        frames = sys._current_frames() if self._tasks or self._threads else {}
        if main_frame is not None:
            frames[_MAIN or 0] = main_frame
        running = set()
        busy: set[SampledCapture] = set()  # captures whose work is on the CPU right now
        for loop, ident in list(self._loops.items()):
            if loop.is_closed():
                del self._loops[loop]
                if self._loop_of.get(ident) is loop:
                    del self._loop_of[ident]
                continue
            task = asyncio.current_task(loop)
            capture = self._tasks.get(task) if task is not None else None
            if capture is None and main_frame is not None and ident == _MAIN:
                # A task the request spawned (asyncio.gather, BaseHTTPMiddleware's call_next)
                # runs in a copy of the request's context; a signal handler runs in the
                # context of whatever it interrupted, so it can ask.
                found = current_capture.get()
                if isinstance(found, SampledCapture) and found.sampler is self:
                    capture = found
            frame = frames.get(ident)
            if capture is None or frame is None:
                continue
            running.add(task)
            busy.add(capture)
            w = weight(capture.interval)
            if w:
                codes = _walk(frame, capture.anchor, task_root=True)
                if codes is not None:
                    capture.add((w, (), codes, False))
        for ident, entries in list(self._threads.items()):
            frame = frames.get(ident)
            if frame is None:
                continue
            for capture, prefix, anchor in list(entries):
                w = weight(capture.interval)
                if w:
                    codes = _walk(frame, anchor)
                    if codes is not None:
                        capture.add((w, prefix, codes, False))
        # Requests that are not running are suspended in an await: where, is in their
        # coroutine chain (unless a worker thread is doing their work - sampled above).
        suspended = [
            (task, capture)
            for task, capture in list(self._tasks.items())
            if task not in running and not capture.in_threads and capture not in busy
        ]
        scale = 1.0
        if len(suspended) > MAX_AWAIT_SAMPLES:
            # Walking every suspended coroutine chain on every tick would cost the loop time
            # in proportion to concurrency; a random few, weighted up, estimate the same (each
            # is drawn with probability k/n and weighs n/k times its own weight).
            scale = len(suspended) / MAX_AWAIT_SAMPLES
            suspended = self._sample_of(suspended, MAX_AWAIT_SAMPLES)
        for task, capture in suspended:
            w = weight(capture.interval)
            if w:
                codes = _awaiting(task, capture.anchor)
                if codes:
                    capture.add((w * scale, (), codes, True))
        if not self._passive or main_frame is None:
            return None
        return self._sample_passive(gap, weight, main_frame, running, busy)

    def _sample_passive(
        self,
        gap: float,
        weight: Callable[[float], float],
        main_frame: FrameType,
        running: set[Any],
        busy: set[SampledCapture],
    ) -> bool | None:
        """Sample the passive requests (:class:`SampledRequest`) of the main thread's loop: the
        one running now, from the context this signal interrupted, and a few suspended ones,
        from their tasks' contexts. Whether one was in flight (None: not looked at)."""
        seen = False
        loop = _get_running_loop()
        current = _current_task(loop) if loop is not None else None
        request = current_sampled.get()
        if request is not None and request[CAPTURE] is not False and current not in running:
            seen = True
            w = weight(request[BACKEND].interval)
            if w:
                # One walk up the stack: the (innermost) middleware's frame and the codes below.
                anchor, codes = self._above_anchor(main_frame)
                capture = request[CAPTURE]
                if capture is None:
                    capture = self.promote(request, anchor)
                elif capture.anchor is None:
                    capture.anchor = anchor  # first seen in a task the request spawned
                if codes is not None:
                    capture.add((w, (), codes, False))
                busy.add(capture)
        if loop is None:
            return seen
        # Whether to look at all: at the finest passive interval (one interval, as usual).
        # Below, a request at a coarser one is then drawn with the conditional chance, so that
        # its overall chance stays gap / interval.
        fine = min(self._passive_intervals)
        if not weight(fine):
            return seen or None

        def drawn_weight(interval: float) -> float:
            if gap >= fine or interval == fine:
                return weight(interval) if interval != fine else max(gap, fine)
            return interval if self._random() * interval < fine else 0.0

        tasks = _live_tasks(loop)
        if not tasks:
            return seen
        # A few drawn at random (with replacement), each weighted up by n/k: unbiased. The
        # draws that land on no request (the running task, a registered one, a task of the
        # server's own) are draws spent on nothing.
        n = len(tasks)
        draws = min(MAX_AWAIT_SAMPLES, n)
        scale = n / draws
        chance = self._random
        registered = self._tasks
        for _ in range(draws):
            task = tasks[int(chance() * n)]
            if task is current or task in registered:
                continue
            # One walk down the await chain: the (innermost) middleware's coroutine, whose
            # frame holds the request's holder, and the codes below it. (Reading the holder
            # there, not from the task's context, spares gc.get_referents on 3.11.)
            anchor, codes = self._below_anchor(task)
            if anchor is None:
                # Not a request, or a task one spawned (no chain of its own to sample): it
                # only tells whether a request is in flight, if none was seen yet.
                if not seen:
                    seen = _holder_of(task) is not None
                continue
            frame = getattr(anchor, "cr_frame", None) or getattr(anchor, "gi_frame", None)
            request = _holder_in(frame)
            if request is None:
                continue
            seen = True
            capture = request[CAPTURE]
            if capture is not None and (capture.in_threads or capture in busy):
                continue  # its worker thread was sampled, or it runs right now
            w = drawn_weight(request[BACKEND].interval)
            if not w:
                continue
            if capture is None:
                capture = self.promote(request, frame)
            if codes:
                capture.add((w * scale, (), codes, True))
        if not seen:
            # None of the few drawn was a request: make sure, before the timer slows down.
            for task in tasks[:MAX_TASKS_SCANNED]:
                if task is not current and task not in registered and _holder_of(task):
                    return True
        return seen


def _holder_of(task: Any) -> SampledRequest | None:
    """The holder of the passive request ``task`` runs (or was spawned by), if in flight."""
    context = task_context(task)
    request = context.get(current_sampled) if context is not None else None
    return request if request is not None and request[CAPTURE] is not False else None


def _holder_in(frame: FrameType | None) -> SampledRequest | None:
    """The holder in a passive request's middleware frame (its local ``sampled``), if the
    request is in flight."""
    request = frame.f_locals.get("sampled") if frame is not None else None
    if type(request) is list and request[CAPTURE] is not False:
        return request
    return None


_atexit_registered: set[int] = set()


def _register_atexit(sampler: Sampler) -> None:
    if id(sampler) not in _atexit_registered:
        _atexit_registered.add(id(sampler))
        atexit.register(sampler.stop)


def _can_use_sigalrm() -> bool:
    if not hasattr(signal, "setitimer") or os.environ.get("FASTPROF_SAMPLER") == "thread":
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    return signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)


def _awaiting(task: Any, anchor: FrameType | None) -> tuple[CodeType, ...]:
    """The code objects of a suspended task's await chain, from below ``anchor`` inwards."""
    codes: list[CodeType] = []
    collecting = anchor is None
    anchor_code = anchor.f_code if anchor is not None else None
    awaitable = task.get_coro()
    while awaitable is not None:
        # The code, not the frame: reading cr_frame makes CPython build a frame object for
        # every coroutine of the chain, which then lives as long as the coroutine.
        code = getattr(awaitable, "cr_code", None) or getattr(awaitable, "gi_code", None)
        if code is None:
            break
        if collecting:
            codes.append(code)
        elif (
            code is anchor_code
            and (getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None))
            is anchor
        ):
            collecting = True
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return tuple(codes)


_masked: set[int] = set()


def _keep_sigalrm_off_this_thread() -> None:
    """Block SIGALRM in a worker thread (once per thread).

    The timer's signal goes to one thread of the process; if a busy worker takes it, the main
    thread - idle in ``select()``, where the handler must run - is not woken, and the tick waits
    for the loop's next event (seen here: 2 ticks in 35 ms of a 2 ms interval).
    """
    ident = threading.get_ident()
    if ident not in _masked and ident != _MAIN and hasattr(signal, "pthread_sigmask"):
        _masked.add(ident)
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})


_get_ident = threading.get_ident
_Coroutine = CoroutineType
_current_task = asyncio.current_task
_get_running_loop = asyncio._get_running_loop


def _live_tasks(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """The unfinished tasks to draw suspended requests from, as cheaply as the Python version
    allows.

    ``asyncio.all_tasks()`` walks a WeakSet with a Python generator and calls a Python
    function per task to check its loop; a tick pays that at 100 Hz. On CPython 3.11, whose
    registry is that WeakSet, its references are read directly (tasks of other loops included:
    the caller skips them as draws on no request). Finished tasks stay in the registry until
    they are collected; left in, they took draws, and a request suspended among them went
    unsampled for its whole life (tests/test_isolation.py, in a long test session).
    Elsewhere, the public function.
    """
    registry = getattr(asyncio.tasks, "_all_tasks", None)
    refs = getattr(registry, "data", None)
    if isinstance(refs, set):
        try:
            return [t for t in [ref() for ref in list(refs)] if t is not None and not t.done()]
        except RuntimeError:  # changed size while copied (another thread): the slow way
            pass
    return list(asyncio.all_tasks(loop))


_TASK_STEP = asyncio.events.Handle._run.__code__
_MAIN = threading.main_thread().ident


def _walk(
    frame: FrameType | None, anchor: FrameType | None, *, task_root: bool = False
) -> tuple[CodeType, ...] | None:
    """Code objects from just below ``anchor`` down to ``frame``; None if anchor not on stack.

    With ``task_root``, a stack without the anchor (a task the request spawned) is taken from
    the task's own first frame (just below the event loop's ``Handle._run``) instead.
    """
    codes: list[CodeType] = []
    while frame is not None:
        if frame is anchor:
            codes.reverse()
            return tuple(codes)
        if task_root and frame.f_code is _TASK_STEP:
            codes.reverse()
            return (_SPAWNED, *codes)
        codes.append(frame.f_code)
        frame = frame.f_back
    return None if anchor is not None else tuple(reversed(codes))


def _spawned_marker() -> None:
    """Stands for "a task the request spawned" at the top of such samples."""


_SPAWNED = _spawned_marker.__code__.replace(co_name="<spawned task>", co_filename="<asyncio>")
