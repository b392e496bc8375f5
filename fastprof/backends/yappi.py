"""The yappi backend: deterministic, coroutine-aware tracing, one tag per capture.

yappi is a process-wide profiler, so it cannot be started once per request. Instead it runs while
at least one capture is active (started on the first, stopped and cleared after the last) and
every capture gets its own integer *tag*, kept in a context variable that yappi's tag callback
reads on every call. Each request is a task with its own copied context, so concurrent requests
land in separate tags and never see each other's frames; worker threads started through
``run_in_threadpool``/``asyncio.to_thread`` copy the context and inherit the tag.

From call graph to tree
    yappi reports, per tag, a call *graph*: per function ``ttot`` (inclusive), ``tsub``
    (exclusive) and, per caller->callee edge, the callee's inclusive time from that caller. The
    tree grows from the functions the anchor called, plus any function whose time no tagged
    caller explains (called by the anchor before yappi saw it, by the block of ``profile()``, or
    by the event loop: tasks the request spawned, such as ``gather``'s, and loop callbacks run in
    its context appear beside the app as further top-level frames). A function reached with time
    ``t`` gets the fraction ``t / ttot`` of its own ``tsub`` and of each outgoing edge, so a
    shared helper's time is split among its callers in proportion to what each caller's edge
    measured. yappi folds direct recursion into the outermost call. Indirect recursion (FastAPI's
    exception wrapper is on every request's stack twice) makes yappi merge both calls' edges
    into one function: the edges that lead back to the function are placed at the outer call,
    and the rest where the recursion closes. Branches below 1e-5 of the capture's time fold into
    their parent's self time.

C functions
    yappi traces C calls whatever its ``builtins`` flag says (the flag only filters reports), so
    it is started with the flag on and C functions are made transparent: their time is the
    calling Python frame's self time, and the Python functions they call (``exec`` running a
    module, ``sorted`` calling a key) hang under that frame - what a sampling profiler shows.

Awaits
    With ``clock="wall"`` yappi measures a coroutine from its first start to its final return, so
    the time it spent suspended is part of its ``tsub``, inseparable from the time it ran: there
    is no unexplained remainder to call await time. The exclusive time of *coroutine* functions
    is therefore reported as ``await_time``: in a web app it is dominated by waiting
    (``asyncio.sleep``, a driver awaiting a socket, a threadpool handoff), and it lets the
    threadpool graft absorb the wait it explains. CPU work written inline in a coroutine's own
    body shows as await too; plain functions' exclusive time is always self time. With
    ``clock="cpu"`` a suspended coroutine accrues nothing and there is no await time at all.

Threads
    ``wrap_thread`` gives each distinct handoff point its own tag; those functions are built into a
    separate tree and grafted under the frame that awaited them (absorbing the matching await time
    under the wall clock, so a second spent waiting for a thread is counted once).

``samples`` holds call counts (apportioned like the times), not samples. Limits: stats are
cleared only when no capture is active, so a process that always has a capture running grows
yappi's memory; a capture nested in another in the same context (``profile()`` inside a
profiled request) keeps its frames to itself; one clock at a time per process; yappi uses the
same interpreter hook as pyinstrument, so the two cannot run at once.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from inspect import CO_ASYNC_GENERATOR, CO_COROUTINE, CO_ITERABLE_COROUTINE
from types import CodeType, FrameType
from typing import Any, Literal, TypeVar, get_args

from fastprof._frames import code_key
from fastprof.backends.base import Backend, BackendUnavailable, Capture, TreeSource
from fastprof.model import ROOT_KEY, CallTree, FrameKey, Node

try:
    import yappi
except ImportError as exc:
    raise BackendUnavailable(
        "the yappi backend needs yappi: pip install 'fastprof-asgi[yappi]'"
    ) from exc

T = TypeVar("T")

Clock = Literal["wall", "cpu"]
CLOCKS: tuple[str, ...] = get_args(Clock)

_ASYNC_FLAGS = CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR
_FASTPROF_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_PRUNE = 1e-5  # branches below this fraction of the capture's time fold into their parent
_MAX_DEPTH = 256
_MAX_NODES = 50_000

#: The tag of the capture the running code belongs to; 0 is "no capture" (yappi's default).
_tag: ContextVar[int] = ContextVar("fastprof_yappi_tag", default=0)
_next_tag = itertools.count(1).__next__

# yappi is process-wide: one owner count shared by every backend instance.
_lock = threading.Lock()
_users = 0
_clock: Clock | None = None


class YappiBackend(Backend):
    """yappi, tracing every call; ``clock`` is ``"wall"`` (default) or ``"cpu"``.

    ``interval`` is accepted for a uniform signature and ignored: yappi does not sample.
    """

    name = "yappi"

    def __init__(self, *, interval: float = 0.001, clock: Clock = "wall") -> None:
        super().__init__(interval=interval)
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(map(repr, CLOCKS))}, got {clock!r}")
        self.clock: Clock = clock
        self._live: set[_YappiCapture] = set()
        self._live_lock = threading.Lock()

    def start(self, anchor: FrameType | None, *, is_async: bool) -> Capture:
        capture = _YappiCapture(self, anchor, _prefix(anchor, sys._getframe(1)))
        with self._live_lock:
            self._live.add(capture)
        # Tagging starts last: whatever fastprof runs before returning is not the app's.
        capture.begin()
        return capture

    def close(self) -> None:
        """Give up this backend's live captures; yappi stops when no capture is left."""
        with self._live_lock:
            live, self._live = self._live, set()
        for capture in live:
            capture.release()

    def _forget(self, capture: _YappiCapture) -> None:
        with self._live_lock:
            self._live.discard(capture)


class _YappiCapture(Capture):
    def __init__(
        self, backend: YappiBackend, anchor: FrameType | None, prefix: list[FrameKey]
    ) -> None:
        super().__init__(anchor)
        self.backend = backend
        self.clock = backend.clock
        self.prefix = prefix
        self.tag = _next_tag()
        #: Threadpool handoff point -> the tag its worker-thread code runs under.
        self.threads: dict[tuple[FrameKey, ...], int] = {}
        self._lock = threading.Lock()
        self._released = False
        self._token: Token[int] | None = None
        self._started = 0.0
        _acquire(self.clock)

    def begin(self) -> None:
        self._started = time.perf_counter()
        self._token = _tag.set(self.tag)

    def stop(self) -> TreeSource:
        duration = time.perf_counter() - self._started
        self._untag()
        try:
            with _lock:
                # Eager: the last capture's clear_stats must not take this one's numbers along.
                released = self._released
                main = _snapshot(self.tag) if not released else {}
                with self._lock:
                    handoffs = list(self.threads.items())
                threads = [(path, _snapshot(tag) if not released else {}) for path, tag in handoffs]
        finally:
            self.release()
            self.backend._forget(self)
        anchor = code_key(self.anchor.f_code) if self.anchor is not None else None
        clock, prefix = self.clock, self.prefix
        return TreeSource(lambda: _build(main, threads, anchor, prefix, clock, duration))

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        _release()

    def _untag(self) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        try:
            _tag.reset(token)
        except ValueError:  # stopped in another context than it started in
            _tag.set(0)

    def wrap_thread(self, func: Callable[..., T], path: list[Any]) -> Callable[..., T]:
        where = tuple(path)
        with self._lock:
            tag = self.threads.get(where)
            if tag is None:
                tag = self.threads[where] = _next_tag()

        def run_tagged(*args: Any, **kwargs: Any) -> T:
            # The worker runs in a copy of the request's context: this set stays in that copy.
            token = _tag.set(tag)
            try:
                return func(*args, **kwargs)
            finally:
                _tag.reset(token)

        return run_tagged


# -- process-wide yappi ownership -----------------------------------------------------------


def _acquire(clock: Clock) -> None:
    global _users, _clock
    with _lock:
        if _users == 0:
            if yappi.is_running():
                raise BackendUnavailable(
                    "yappi is already running (started outside fastprof); stop it before "
                    "profiling with backend='yappi'"
                )
            yappi.clear_stats()  # set_clock_type refuses to run over old stats
            yappi.set_clock_type(clock)
            yappi.set_tag_callback(_tag.get)
            yappi.start(builtins=True, profile_threads=True)
            _clock = clock
        elif clock != _clock:
            raise BackendUnavailable(
                f"yappi is already running with the {_clock} clock for another capture; a "
                f"process can use only one yappi clock at a time (asked for {clock!r})"
            )
        _users += 1


def _release() -> None:
    global _users, _clock
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0:
            yappi.stop()
            yappi.set_tag_callback(None)
            yappi.clear_stats()
            _clock = None


# -- snapshot -------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class _Func:
    """One function's stats in one tag (and one thread)."""

    key: FrameKey
    ttot: float
    tsub: float
    ncall: int
    is_async: bool
    builtin: bool
    #: ``(callee index, calls, callee's inclusive time from here)``
    children: tuple[tuple[int, int, float], ...]


def _snapshot(tag: int) -> dict[int, _Func]:
    """This tag's stats, keyed by yappi's per-function index (unique across threads)."""
    descriptors: Mapping[str, Any] = getattr(yappi, "_fn_descriptor_dict", {})
    funcs: dict[int, _Func] = {}

    def collect(stat: Any) -> bool:
        code = descriptors.get(stat.full_name)
        if isinstance(code, CodeType):
            key = code_key(code)
            is_async = bool(code.co_flags & _ASYNC_FLAGS)
        else:  # yappi names methods "Class.method"; the frame key wants the code's own name
            key = (str(stat.name).rpartition(".")[2], str(stat.module), int(stat.lineno))
            is_async = False
        children = tuple((int(c[0]), int(c[1]), float(c[3])) for c in stat.children)
        funcs[stat.index] = _Func(
            key,
            float(stat.ttot),
            float(stat.tsub),
            int(stat.ncall),
            is_async,
            bool(stat.builtin),
            children,
        )
        return False  # keep nothing in yappi's own (merging) result list

    yappi.get_func_stats(tag=tag, filter_callback=collect)
    return funcs


def _prefix(anchor: FrameType | None, frame: FrameType | None) -> list[FrameKey]:
    """The app's frames between ``anchor`` and the caller of ``start``.

    ``with profile():`` anchors at the caller of the block's function, whose own frame started
    before the capture and so never shows in the tag: the block's calls are hung under it here.
    """
    keys: list[FrameKey] = []
    while frame is not None and frame is not anchor:
        keys.append(code_key(frame.f_code))
        frame = frame.f_back
    if frame is None or anchor is None:
        return []
    keys.reverse()
    return [key for key in keys if not _internal(key)]


def _internal(key: FrameKey) -> bool:
    return key[1].startswith(_FASTPROF_DIR)


# -- tree building --------------------------------------------------------------------------


def _build(
    main: dict[int, _Func],
    threads: list[tuple[tuple[FrameKey, ...], dict[int, _Func]]],
    anchor: FrameKey | None,
    prefix: list[FrameKey],
    clock: Clock,
    duration: float,
) -> CallTree:
    wall = clock == "wall"
    tree = CallTree(backend="yappi", duration=duration, interval=None, meta={"clock": clock})
    _expand(tree.root, main, anchor, prefix, wall)
    _sum_totals(tree.root)
    for path, funcs in threads:
        sub = Node(*ROOT_KEY)
        _expand(sub, funcs, None, [], wall)
        _sum_totals(sub)
        if sub.children:
            tree.graft(path, sub, absorb_await=wall)
    return tree


def _expand(
    root: Node, funcs: dict[int, _Func], anchor: FrameKey | None, prefix: list[FrameKey], wall: bool
) -> None:
    """Expand ``funcs`` (one tag's call graph) into a tree below ``root``."""
    anchors = {i for i, f in funcs.items() if f.key == anchor} if anchor is not None else set()
    above = _reaching(anchors, funcs)
    # (depth in prefix to hang under, function) -> [time, calls]
    seeds: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for i in anchors:
        for child, calls, spent in funcs[i].children:
            if child in funcs and child not in above:
                seeds[0, child][0] += spent
                seeds[0, child][1] += calls
    # Time not explained by a tagged caller came from untagged code: the anchor's frame before
    # it was first resumed, the block of ``profile()``, the event loop running a callback.
    # It hangs under ``prefix`` (the frames between the anchor and ``start``).
    seen_time: dict[int, float] = defaultdict(float)
    seen_calls: dict[int, int] = defaultdict(int)
    callers: dict[int, set[int]] = defaultdict(set)
    for i, func in funcs.items():
        for child, calls, spent in func.children:
            if child != i:
                seen_time[child] += spent
                seen_calls[child] += calls
                callers[child].add(i)
    for i, func in funcs.items():
        rest = func.ttot - seen_time[i]
        if i in above or rest <= 1e-9:
            continue
        if callers[i] <= _descendants(i, funcs):
            # Tagged callers only in its own recursion (a -> b -> a): those calls are nested in
            # the untagged outer one, which yappi's ttot already measures whole.
            rest, calls = func.ttot, 1
        else:
            calls = max(func.ncall - seen_calls[i], 1)
        depth = len(prefix) - 1 if prefix and prefix[-1] == func.key else len(prefix)
        seeds[depth, i][0] += rest
        seeds[depth, i][1] += calls

    bases = [root]
    for key in prefix:
        bases.append(bases[-1].child(key))
    total = sum(t for t, _ in seeds.values())
    expander = _Expander(funcs, wall, floor=_PRUNE * total)
    for (depth, i), (seed_time, seed_calls) in seeds.items():
        if funcs[i].builtin:  # called from untagged code: only its Python callees are the app's
            share = seed_time / funcs[i].ttot if funcs[i].ttot > 0 else 0.0
            for child, n, part in expander.edges(i, share)[0]:
                expander.seed(bases[depth], child, part, n)
        else:
            expander.seed(bases[depth], i, seed_time, seed_calls)
    expander.run()


class _Expander:
    """Turns a call graph into a tree, depth first, without recursion in Python."""

    def __init__(self, funcs: dict[int, _Func], wall: bool, floor: float) -> None:
        self.funcs = funcs
        self.wall = wall
        self.floor = floor
        self.budget = _MAX_NODES
        self.stack: list[tuple[Node, int, float, float, tuple[FrameKey, ...]]] = []
        #: Edge time a recursive function's outer call could not hold: callee -> [time, calls].
        self.owed: dict[int, dict[int, list[float]]] = {}
        self._reach: dict[tuple[int, int], bool] = {}

    def seed(self, base: Node, i: int, spent: float, calls: float) -> None:
        if spent > 0 and not _internal(self.funcs[i].key):
            self.stack.append((base, i, spent, calls, ()))

    def run(self) -> None:
        while self.stack:
            self._visit(*self.stack.pop())

    def edges(self, i: int, share: float) -> tuple[list[tuple[int, float, float]], float]:
        """``i``'s Python callees ``(index, calls, time)``, seen through C functions.

        Also returns the time spent in C functions themselves, which belongs to ``i``.
        """
        parts: list[tuple[int, float, float]] = []
        in_c = 0.0
        todo = [(i, share, 0)]
        while todo:
            j, scale, depth = todo.pop()
            for child, count, spent in self.funcs[j].children:
                if child == j:
                    continue  # direct recursion: yappi already counts it in the outer call
                callee = self.funcs.get(child)
                part = spent * scale
                if callee is None or (callee.builtin and depth >= 8):
                    in_c += part
                elif callee.builtin:
                    ratio = part / callee.ttot if callee.ttot > 0 else 0.0
                    in_c += max(callee.tsub, 0.0) * ratio if callee.ttot > 0 else part
                    todo.append((child, ratio, depth + 1))
                else:
                    parts.append((child, count * scale, part))
        return parts, in_c

    def _visit(
        self, parent: Node, i: int, spent: float, calls: float, path: tuple[FrameKey, ...]
    ) -> None:
        func = self.funcs[i]
        node = parent.child(func.key)
        node.samples += max(round(calls), 1)
        path = (*path, func.key)
        share = spent / func.ttot if func.ttot > 0 else 0.0
        own = max(func.tsub, 0.0) * share if func.ttot > 0 else spent
        parts, folded = self.edges(i, share)
        room = spent - own - folded
        if sum(t for _, _, t in parts) > room + 0.01 * spent + 1e-6:  # more than timing noise
            parts = self._allot(i, parts, max(room, 0.0))
        for child, n, part in parts:
            callee = self.funcs[child]
            if callee.key in path:
                own -= self._reenter(node, child, n, part, own, path)
            elif part <= 0:
                continue
            elif part < self.floor or len(path) >= _MAX_DEPTH or self.budget <= 0:
                folded += part
            else:
                self.budget -= 1
                self.stack.append((node, child, part, n, path))
        if self.wall and func.is_async:
            node.await_time += max(own, 0.0)
        else:
            node.self_time += max(own, 0.0)
        node.self_time += folded

    def _allot(
        self, i: int, parts: list[tuple[int, float, float]], room: float
    ) -> list[tuple[int, float, float]]:
        """Fit the edges of a function that recurses through its callees into its own time.

        yappi keeps one set of edges per function, so an indirectly recursive function lists the
        callees of its inner calls too. The edges that lead back to it belong to the outer call
        and are placed first; what does not fit is owed to the inner call, placed where the
        recursion closes (:meth:`_reenter`).
        """
        cyclic = [p for p in parts if self._reaches(p[0], i)]
        if not cyclic:
            return parts
        straight = [p for p in parts if p not in cyclic]
        owed = self.owed.setdefault(i, {})
        placed: list[tuple[int, float, float]] = []
        for child, n, part in cyclic:
            if part <= 0:
                placed.append((child, n, part))
                continue
            take = min(part, room)
            room -= take
            placed.append((child, n * take / part, take))
            _owe(owed, child, part - take, n * (1 - take / part))
        rest = sum(part for _, _, part in straight)
        # a sliver of room left is timing noise, not a share of the inner call's callees
        ratio = min(1.0, room / rest) if rest > 0 and room > 0.01 * rest else 0.0
        for child, n, part in straight:
            placed.append((child, n * ratio, part * ratio))
            _owe(owed, child, part * (1 - ratio), n * (1 - ratio))
        return placed

    def _reenter(
        self, node: Node, i: int, calls: float, part: float, own: float, path: tuple[FrameKey, ...]
    ) -> float:
        """Hang the inner call of recursive function ``i`` under ``node``; return time moved.

        Under the wall clock yappi times only the outermost call of a coroutine function, and an
        inner call's wait lands in its caller's exclusive time: that is where it is taken from.
        """
        owed = self.owed.get(i)
        left = sum(entry[0] for entry in owed.values()) if owed else 0.0
        if not owed or left <= 0:
            return 0.0
        func = self.funcs[i]
        lost = max(own, 0.0) if self.wall and func.is_async else 0.0
        amount = min(left, part + lost)
        inner = node.child(func.key)
        inner.samples += max(round(calls), 1)
        ratio = amount / left
        for child, entry in owed.items():
            take, n = entry[0] * ratio, entry[1] * ratio
            entry[0] -= take
            entry[1] -= n
            if take > 0 and self.funcs[child].key not in path:
                self.stack.append((inner, child, take, n, path))
        return max(amount - part, 0.0)

    def _reaches(self, start: int, target: int) -> bool:
        known = self._reach.get((start, target))
        if known is None:
            seen = {start}
            todo = [start]
            while todo and target not in seen:
                for child, _, _ in self.funcs[todo.pop()].children:
                    if child not in seen and child in self.funcs:
                        seen.add(child)
                        todo.append(child)
            known = self._reach[start, target] = target in seen
        return known


def _owe(owed: dict[int, list[float]], child: int, time: float, calls: float) -> None:
    if time > 0:
        entry = owed.setdefault(child, [0.0, 0.0])
        entry[0] += time
        entry[1] += calls


def _descendants(start: int, funcs: dict[int, _Func]) -> set[int]:
    """Every function ``start`` (transitively) calls."""
    found: set[int] = set()
    todo = [start]
    while todo:
        for child, _, _ in funcs[todo.pop()].children:
            if child not in found and child in funcs:
                found.add(child)
                todo.append(child)
    return found


def _reaching(targets: set[int], funcs: dict[int, _Func]) -> set[int]:
    """``targets`` and every function that (transitively) calls one of them."""
    callers: dict[int, list[int]] = defaultdict(list)
    for i, func in funcs.items():
        for child, _, _ in func.children:
            callers[child].append(i)
    found = set(targets)
    todo = list(targets)
    while todo:
        for caller in callers[todo.pop()]:
            if caller not in found:
                found.add(caller)
                todo.append(caller)
    return found


def _sum_totals(root: Node) -> None:
    """Set every node's ``total`` (and the root's ``samples``) from its parts, bottom up."""
    order: list[Node] = []
    todo = [root]
    while todo:
        node = todo.pop()
        order.append(node)
        todo.extend(node.children.values())
    for node in reversed(order):
        node.total = node.self_time + node.await_time + sum(c.total for c in node.children.values())
    root.samples = sum(child.samples for child in root.children.values())
