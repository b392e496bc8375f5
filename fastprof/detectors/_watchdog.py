"""The machinery behind ``event_loop_blocking``: a heartbeat on each watched loop and one thread
that notices when the heartbeat is late and samples the loop thread while it is stuck.

* **Heartbeat** - a timer on the loop that notes when it ran (and the loop thread's CPU time)
  and re-arms itself every ``beat`` seconds. While it is overdue, the loop is running something
  that does not yield: a *stall*.
* **Watchdog** - a thread (``fastprof-watchdog``) that wakes every ``check`` seconds. When a
  heartbeat is overdue by half the threshold it opens a :class:`_Stall` and then wakes every
  ``sample_every`` seconds to read the loop thread's stack (``sys._current_frames()``), current
  task and CPU/run-queue clocks, until the heartbeat runs again.
* A stall is cut into **segments**, one per request holding the loop: the one whose
  ``FastprofMiddleware._serve`` frame (its locals hold the request's state) is on the stack, or
  else the one in the running task's context (a task the request spawned), or a ``guard()``
  block entered on the loop thread. A request that blocks right after another one gets its own
  segment. Every segment that lasted the threshold is handed to the detector as an
  :class:`Episode` with its samples, the loop thread's CPU and run-queue share, how much of it
  was garbage collection (``gc.callbacks``) and how much of it the whole process was frozen
  (the watchdog itself woke late and the process used no CPU).

The GIL: the watchdog needs it to sample. A loop stuck in a blocking call has released it; a
loop stuck in Python code hands it over at the next switch interval (5 ms). A C call that holds
the GIL (a GC pass, ``json.dumps``, ``re``) keeps the watchdog out until it returns; the
watchdog then samples at once, before anything of its own that releases the GIL again (a read
of /proc), while the loop thread still stands at the caller's line. Next to a busy loop every
retake of the GIL is a wait, so nothing on the healthy path releases it but the sleep: the
heartbeat reads ``time.thread_time()``, /proc is read only during stalls, and the thread
sleeps on a bare lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any

from fastprof._context import current_request, task_context
from fastprof.findings import is_user_file
from fastprof.record import RequestState

logger = logging.getLogger("fastprof")

#: A frame position: code, line, last instruction offset.
Position = tuple[CodeType, int, int]


@dataclass(frozen=True, slots=True)
class Sample:
    """Where the loop thread was at one moment of a stall."""

    at: float
    #: the innermost frame of user code (below the request's middleware frame), if any
    user: Position | None
    #: the innermost frame, and the module it belongs to
    inner: Position
    inner_module: str
    #: module of the frame the user frame was calling into (None: the user frame is innermost)
    callee_module: str | None
    #: how long the watchdog waited for the GIL before this sample: about nothing when the loop
    #: thread was in a call that releases it, about one switch interval when it was running
    #: Python code, longer when a C call held it
    gil_wait: float = 0.0


@dataclass(frozen=True, slots=True)
class Episode:
    """A stretch of at least ``threshold`` seconds during which the loop did not run."""

    loop: str
    start: float
    end: float
    #: the request found on the loop thread's stack (None: no request, or not seen)
    state: RequestState | None
    samples: tuple[Sample, ...]
    #: share of the measured window the loop thread was on a CPU / waiting for one
    cpu: float | None
    runqueue: float | None
    #: seconds of garbage collection, and of the whole process frozen, inside the episode
    gc: float
    frozen: float
    #: other requests in flight on the loop when the episode began
    delayed: tuple[RequestState, ...] = ()

    @property
    def duration(self) -> float:
        return self.end - self.start


def _share(part: float, whole: float) -> float:
    return min(1.0, max(0.0, part / whole))


def _context_state(task: asyncio.Task[Any]) -> RequestState | None:
    """The request in ``task``'s context (``current_request``), read from another thread."""
    context = task_context(task)
    return context.get(current_request) if context is not None else None


class _ThreadClock:
    """CPU and run-queue seconds of one thread, readable from any thread (Linux schedstat)."""

    def __init__(self) -> None:
        self.ident = threading.get_ident()
        self._fd = -1
        self._clock: int | None = None
        try:
            path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            # No schedstat: the thread's CPU clock alone (no run-queue share).
            try:
                self._clock = time.pthread_getcpuclockid(self.ident)
            except (AttributeError, OSError):
                self._clock = None

    def read(self) -> tuple[float, float] | None:
        if self._fd >= 0:
            try:
                fields = os.pread(self._fd, 96, 0).split()
                return int(fields[0]) / 1e9, int(fields[1]) / 1e9
            except (OSError, ValueError, IndexError):
                return None
        if self._clock is not None:
            try:
                return time.clock_gettime(self._clock), 0.0
            except OSError:
                return None
        return None

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class _LoopWatch:
    """The heartbeat of one loop, and the stall currently open on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.kind = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        self.beats = 0
        self.beat_at = time.monotonic()
        self.due = self.beat_at + interval
        #: the loop thread's CPU time at the last heartbeat (``time.thread_time``, which - unlike
        #: a read of /proc - does not release the GIL: nothing on the healthy path does)
        self.beat_cpu = 0.0
        self.clock: _ThreadClock | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.stopped = False
        #: the last time the watchdog saw the loop not running (lateness before it is no stall)
        self.resumed = 0.0
        #: the worst lateness of a heartbeat since the watchdog last looked, and when it ended
        self.worst_lag = 0.0
        self.worst_end = 0.0
        self.stall: _Stall | None = None

    def bind(self) -> None:
        """Note the loop thread; called on it."""
        if self.clock is None or self.clock.ident != threading.get_ident():
            if self.clock is not None:
                self.clock.close()
            self.clock = _ThreadClock()
            self.beat_cpu = time.thread_time()

    def beat(self) -> None:
        if self.stopped:
            return
        now = time.monotonic()
        lag = now - self.due
        if lag > self.worst_lag:
            self.worst_lag, self.worst_end = lag, now
        if self.clock is None or self.clock.ident != threading.get_ident():
            self.bind()
        self.beat_cpu = time.thread_time()
        self.beat_at = now
        self.due = now + self.interval
        self.beats += 1
        self.handle = self.loop.call_later(self.interval, self.beat)

    def cancel(self) -> None:
        """Stop the heartbeat (from any thread)."""
        self.stopped = True
        handle = self.handle
        if handle is None or self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop or not self.loop.is_running():
            handle.cancel()
        else:
            self.loop.call_soon_threadsafe(handle.cancel)


@dataclass(slots=True)
class _Clocks:
    """The loop thread's CPU and run-queue seconds, and when they were read."""

    cpu: float | None
    cpu_at: float
    runqueue: float | None
    runqueue_at: float


@dataclass(slots=True)
class _Segment:
    owner: object
    state: RequestState | None
    start: float
    clocks: _Clocks
    last_at: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    #: other requests in flight when the segment began
    delayed: tuple[RequestState, ...] = ()


@dataclass(slots=True)
class _Stall:
    start: float
    beats: int
    #: CPU from the last heartbeat, run queue from when the stall was seen
    clocks: _Clocks
    segment: _Segment | None = None
    #: where the next segment starts, once one has ended (None: none has yet)
    resume_at: float | None = None


class Watchdog:
    """Watches loops for stalls; calls ``on_episode`` (under its lock) for each one found.

    :param anchor: code of the frame that holds a request's state (``FastprofMiddleware._serve``).
    :param state_of: the request state held by such a frame, or None when it is not ours.
    :param state_of_thread: the state of a block watched on a whole thread (a ``guard()``),
        asked when no anchor frame is on the loop thread's stack.
    """

    def __init__(
        self,
        *,
        threshold: float,
        anchor: CodeType,
        state_of: Callable[[FrameType], RequestState | None],
        state_of_thread: Callable[[int], RequestState | None],
        on_episode: Callable[[Episode], None],
    ) -> None:
        self.threshold = threshold
        self.open_after = threshold / 2
        self.beat = max(threshold / 8, 0.005)
        self.check = max(threshold / 4, 0.005)
        self.sample_every = min(0.01, max(threshold / 8, 0.002))
        self.anchor = anchor
        self.state_of = state_of
        self.state_of_thread = state_of_thread
        self.on_episode = on_episode
        #: stalls open right now (read without the lock by the request path)
        self.open = 0
        self.last_loop: asyncio.AbstractEventLoop | None = None
        self._watches: dict[asyncio.AbstractEventLoop, _LoopWatch] = {}
        self._lock = threading.Lock()
        #: held while running; stop() releases it, which wakes the thread (a bare lock: waiting
        #: on it is one C call, cheaper than an Event's Condition next to a busy loop)
        self._asleep = threading.Lock()
        self._thread: threading.Thread | None = None
        self._gc_started: float | None = None
        self._gc: deque[tuple[float, float]] = deque(maxlen=256)
        self._frozen: deque[tuple[float, float]] = deque(maxlen=64)
        #: the samples taken this round, (list, index): their GIL waits are corrected when
        #: /proc has been read (_discount)
        self._taken: list[tuple[list[Sample], int]] = []

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._asleep.acquire(blocking=False)
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._run, name="fastprof-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if self._asleep.locked():
            self._asleep.release()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        while self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        with self._lock:
            for watch in self._watches.values():
                watch.cancel()
                if watch.clock is not None:
                    watch.clock.close()
                if watch.stall is not None:
                    watch.stall = None
            self._watches.clear()
            self.open = 0
            self.last_loop = None

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Put a heartbeat on ``loop`` (any thread; at once when called on the loop)."""
        self.last_loop = loop
        with self._lock:
            if loop in self._watches or loop.is_closed():
                return
            watch = self._watches[loop] = _LoopWatch(loop, self.beat)
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            watch.bind()
            watch.handle = loop.call_later(self.beat, watch.beat)
        else:
            loop.call_soon_threadsafe(watch.beat)

    # -- the request path ------------------------------------------------------------------
    def finish(self, state: RequestState) -> None:
        """The request is ending on the loop thread: whatever of it was stuck is over."""
        with self._lock:
            for watch in self._watches.values():
                stall = watch.stall
                if stall is not None and stall.segment is not None and stall.segment.state is state:
                    now = time.monotonic()
                    self._end_segment(watch, stall, now)
                    stall.resume_at = now

    # -- garbage collection ----------------------------------------------------------------
    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
            return
        started, self._gc_started = self._gc_started, None
        if started is not None:
            end = time.monotonic()
            if end - started >= 0.001:
                self._gc.append((started, end))

    def _overlap(self, spans: deque[tuple[float, float]], start: float, end: float) -> float:
        total = 0.0
        for a, b in list(spans):
            total += max(0.0, min(b, end) - max(a, start))
        return total

    def _gc_seconds(self, start: float, end: float) -> float:
        total = self._overlap(self._gc, start, end)
        running = self._gc_started
        if running is not None:
            total += max(0.0, end - max(running, start))
        return total

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        own = _ThreadClock()
        try:
            self._loop_forever(own)
        finally:
            own.close()

    def _loop_forever(self, own: _ThreadClock) -> None:
        delay = self.check
        last = time.monotonic()
        last_cpu = time.process_time()
        before: tuple[float, float] | None = None
        retake = 0.0  # how long the last read of /proc took: the wait to get the GIL back
        while True:
            # Look at ``ready``. If the thread was held up on its way to sleep (the GIL is
            # taken from it at any bytecode, and a C call may then keep it for long), it is
            # already late: look at once, while the loop thread is still where it got the GIL.
            ready = last + delay
            late = ready - time.monotonic()
            stop = self._asleep.acquire(timeout=late) if late > 0 else self._asleep.acquire(False)
            if stop:
                return
            now = time.monotonic()
            # The GIL was last taken back at the end of the sleep - what it waited past
            # ``ready`` - or, when it did not sleep, at the end of the last read of /proc.
            # Either wait counts the watchdog's own run-queue time too (not the loop's doing);
            # the next read tells how much, and the samples taken now are corrected then.
            gil_wait = max(0.0, now - ready) if late > 0 else retake
            cpu = time.process_time()
            gap = now - last
            # Woke far too late while the process used next to no CPU: nothing in the process
            # ran (stopped, descheduled, or a C call holding the GIL without working).
            if gap - delay > self.open_after and cpu - last_cpu < 0.05 * gap:
                self._frozen.append((ready, now))
            last, last_cpu = now, cpu
            busy = False
            self._taken.clear()
            with self._lock:
                for watch in list(self._watches.values()):
                    try:
                        busy = self._check(watch, now, gil_wait) or busy
                    except Exception:  # never let the watchdog die on one bad look
                        logger.debug("fastprof: watchdog check failed", exc_info=True)
            delay = self.sample_every if busy else self.check
            # Read /proc only after sampling (the read releases the GIL, and the loop thread
            # would move on), and only while sampling (next to a busy loop each retake waits).
            after: tuple[float, float] | None = None
            retake = 0.0
            if busy:
                started = time.monotonic()
                after = own.read()
                retake = time.monotonic() - started
            if after is not None and before is not None and self._taken:
                self._discount(after[1] - before[1])
            before = after

    def _check(self, watch: _LoopWatch, now: float, gil_wait: float) -> bool:
        """One look at one loop; True while a stall is open on it."""
        loop = watch.loop
        if watch.stopped or loop.is_closed():
            self._drop(watch)
            return False
        if not loop.is_running():
            watch.resumed = now
            if watch.stall is not None:
                self._close(watch, now)
            return False
        stall = watch.stall
        if stall is None:
            self._missed(watch)
            start = max(watch.due, watch.resumed)
            if now - start < self.open_after:
                return False
            clocks = _Clocks(watch.beat_cpu, watch.beat_at, None, now)
            stall = watch.stall = _Stall(start, watch.beats, clocks)
            self.open += 1
            # Sample before anything that releases the GIL (the /proc read below): the loop
            # thread would run on, and might be somewhere else by the time it is looked at.
            self._sample(watch, stall, time.monotonic(), gil_wait)
            reading = watch.clock.read() if watch.clock is not None else None
            if reading is not None:
                clocks.runqueue, clocks.runqueue_at = reading[1], time.monotonic()
            return True
        if watch.beats != stall.beats:
            self._close(watch, watch.beat_at)
            return False
        self._sample(watch, stall, time.monotonic(), gil_wait)
        return True

    def _drop(self, watch: _LoopWatch) -> None:
        if watch.stall is not None:
            watch.stall = None
            self.open -= 1
        watch.stopped = True
        if watch.clock is not None:
            watch.clock.close()
        self._watches.pop(watch.loop, None)

    def _missed(self, watch: _LoopWatch) -> None:
        """Report heartbeat lateness no open stall saw (the watchdog could not get in)."""
        lag = watch.worst_lag
        if lag < self.threshold:
            return
        end = watch.worst_end
        watch.worst_lag = 0.0
        start = max(end - lag, watch.resumed)
        if end - start >= self.threshold:
            self._emit(
                Episode(
                    watch.kind,
                    start,
                    end,
                    None,
                    (),
                    None,
                    None,
                    self._gc_seconds(start, end),
                    self._overlap(self._frozen, start, end),
                )
            )

    def _sample(self, watch: _LoopWatch, stall: _Stall, now: float, gil_wait: float) -> None:
        ident = watch.clock.ident if watch.clock is not None else -1
        frame = sys._current_frames().get(ident)
        if frame is None:
            return
        task = asyncio.current_task(watch.loop)
        inner = frame
        user: FrameType | None = None
        callee: FrameType | None = None
        state: RequestState | None = None
        below: FrameType | None = None
        current: FrameType | None = frame
        depth = 0
        while current is not None and depth < 500:
            code = current.f_code
            if code is self.anchor:
                state = self.state_of(current)
                if state is not None:
                    break
            elif user is None and is_user_file(code.co_filename):
                user, callee = current, below
            below = current
            current = current.f_back
            depth += 1
        if state is None and task is not None:
            # Not under the middleware's frame: a task the request spawned (anyio task groups,
            # BaseHTTPMiddleware's call_next, create_task) still carries its context.
            state = _context_state(task)
        if state is None:
            state = self.state_of_thread(ident)
        if state is None:
            user = callee = None  # user code outside a request: nothing to point at
        sample = Sample(
            now,
            (user.f_code, user.f_lineno or 0, user.f_lasti) if user is not None else None,
            (inner.f_code, inner.f_lineno or 0, inner.f_lasti),
            str(inner.f_globals.get("__name__", "")),
            str(callee.f_globals.get("__name__", "")) if callee is not None else None,
            gil_wait,
        )
        del frame, inner, user, callee, below, current
        owner: object = state if state is not None else (id(task) if task is not None else None)
        segment = stall.segment
        if segment is not None and segment.owner != owner:
            middle = (segment.last_at + now) / 2
            self._end_segment(watch, stall, middle)
            stall.resume_at = middle
            segment = None
        if segment is None:
            if stall.resume_at is None:
                start, clocks = stall.start, stall.clocks
            else:
                start = stall.resume_at
                reading = watch.clock.read() if watch.clock is not None else None
                read_at = time.monotonic()
                clocks = (
                    _Clocks(reading[0], read_at, reading[1], read_at)
                    if reading is not None
                    else _Clocks(None, read_at, None, read_at)
                )
            segment = stall.segment = _Segment(owner, state, start, clocks)
            if state is not None:
                segment.delayed = tuple(self._in_flight(watch.loop, state))
        segment.samples.append(sample)
        self._taken.append((segment.samples, len(segment.samples) - 1))
        segment.last_at = now

    def _discount(self, queued: float) -> None:
        """Take the watchdog's own run-queue time since the last read out of the GIL waits of
        the samples it took this round (it waited for a CPU, not for the loop thread)."""
        for samples, index in self._taken:
            wait = max(0.0, samples[index].gil_wait - queued)
            samples[index] = dataclasses.replace(samples[index], gil_wait=wait)
        self._taken.clear()

    def _in_flight(
        self, loop: asyncio.AbstractEventLoop, holder: RequestState
    ) -> list[RequestState]:
        """The other requests in flight on ``loop``: ours, found in their tasks' await chains."""
        try:
            tasks = asyncio.all_tasks(loop)
        except RuntimeError:
            return []
        found: list[RequestState] = []
        for task in tasks:
            awaitable: Any = task.get_coro()
            depth = 0
            while awaitable is not None and depth < 100:
                frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
                if frame is None:
                    break
                if frame.f_code is self.anchor:
                    state = self.state_of(frame)
                    if state is not None and state is not holder:
                        found.append(state)
                    break
                awaitable = getattr(awaitable, "cr_await", None) or getattr(
                    awaitable, "gi_yieldfrom", None
                )
                depth += 1
        return found

    def _end_segment(self, watch: _LoopWatch, stall: _Stall, end: float) -> None:
        segment, stall.segment = stall.segment, None
        if segment is None or end - segment.start < self.threshold:
            return
        cpu = runqueue = None
        reading = watch.clock.read() if watch.clock is not None else None
        now = time.monotonic()
        clocks = segment.clocks
        if reading is not None and clocks.cpu is not None and now > clocks.cpu_at:
            cpu = _share(reading[0] - clocks.cpu, now - clocks.cpu_at)
        if reading is not None and clocks.runqueue is not None and now > clocks.runqueue_at:
            runqueue = _share(reading[1] - clocks.runqueue, now - clocks.runqueue_at)
        self._emit(
            Episode(
                watch.kind,
                segment.start,
                end,
                segment.state,
                tuple(segment.samples),
                cpu,
                runqueue,
                self._gc_seconds(segment.start, end),
                self._overlap(self._frozen, segment.start, end),
                segment.delayed,
            )
        )

    def _close(self, watch: _LoopWatch, end: float) -> None:
        stall = watch.stall
        if stall is None:
            return
        self._end_segment(watch, stall, end)
        watch.stall = None
        self.open -= 1
        watch.worst_lag = 0.0  # that lateness was this stall, seen

    def _emit(self, episode: Episode) -> None:
        try:
            self.on_episode(episode)
        except Exception:
            logger.exception("fastprof: reporting a loop stall failed")
