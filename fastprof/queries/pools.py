"""Connection pool waits: how long a request queued for a database connection, and who held them.

The pool_exhaustion detector asks for this (:func:`watch`, counted); the SQLAlchemy and asyncpg
hooks then time every checkout that had to wait because every connection of the pool was in
use (:func:`record_wait`), and how long each connection was held between checkout and
check-in (:func:`checked_out` / :func:`checked_in`). Neither pool says so itself: SQLAlchemy's
``QueuePool`` has a ``checkout`` event but nothing before the wait, and asyncpg's ``Pool`` has
no events at all.

A wait is only counted when the pool was full as the request asked for a connection (all of
``pool_size + max_overflow`` checked out and none idle); the time a checkout spends opening a
new connection is connect time, which connection_per_request looks at, not waiting.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import median
from typing import TYPE_CHECKING, Any, NamedTuple

from fastprof.findings import Location

if TYPE_CHECKING:
    from fastprof.record import RequestState

#: Number of pool_exhaustion detectors watching; the hooks do nothing while it is 0.
watching = 0
_lock = threading.Lock()
_clock = time.perf_counter

#: state.facts key of a request's list of PoolWait.
WAITS = "pool_waits"


@dataclass(eq=False)
class PoolInfo:
    """What is known about one pool, kept while the pool lives."""

    #: "QueuePool (postgresql+asyncpg)", "asyncpg Pool"
    name: str
    size: int
    max_overflow: int
    timeout: float | None
    #: Most connections seen checked out at once (while watched).
    peak_in_use: int = 0
    #: Checkouts waiting right now, and the most seen waiting at once: at that moment
    #: ``capacity + peak_waiting`` requests wanted a connection.
    waiting: int = 0
    peak_waiting: int = 0
    #: Recent holds: (seconds held, the request that held it, where it was checked out).
    holds: deque[tuple[float, RequestState | None, Location | None]] = field(
        default_factory=lambda: deque(maxlen=512)
    )

    @property
    def capacity(self) -> int:
        return self.size + max(self.max_overflow, 0)

    def holders(self, limit: int = 3) -> list[dict[str, Any]]:
        """The routes that held this pool's connections longest (median hold), recent holds."""
        by_route: dict[str, list[tuple[float, Location | None]]] = {}
        for seconds, state, location in list(self.holds):
            # state.route is "GET /users/{user_id}" once the request has ended
            key = "?" if state is None else (state.route or f"{state.method} {state.path}")
            by_route.setdefault(key, []).append((seconds, location))
        ranked = sorted(
            by_route.items(), key=lambda item: -median(s for s, _ in item[1]) * len(item[1])
        )
        found = []
        for route, holds in ranked[:limit]:
            where = next((str(loc) for _, loc in holds if loc is not None), None)
            found.append(
                {
                    "route": route,
                    "checkouts": len(holds),
                    "median_hold_ms": round(median(s for s, _ in holds) * 1000, 2),
                    "checked_out_at": where,
                }
            )
        return found


class PoolWait(NamedTuple):
    """One checkout that waited for a connection."""

    info: PoolInfo
    seconds: float
    in_use: int
    timed_out: bool
    location: Location | None
    #: When the wait began (``perf_counter``).
    started: float = 0.0


_pools: weakref.WeakKeyDictionary[Any, PoolInfo] = weakref.WeakKeyDictionary()
#: Pools that take no weak reference (asyncpg's Pool has __slots__ without __weakref__):
#: keyed by id, with the pool kept so the id cannot be reused while it is here.
_strong: dict[int, tuple[Any, PoolInfo]] = {}


def info(pool: Any, describe: Any) -> PoolInfo:
    """The :class:`PoolInfo` of ``pool``, made by ``describe(pool)`` the first time."""
    try:
        found = _pools.get(pool)
        if found is None:
            found = _pools[pool] = describe(pool)
        return found
    except TypeError:  # no weak references
        entry = _strong.get(id(pool))
        if entry is None or entry[0] is not pool:
            if len(_strong) > 64:
                _strong.clear()
            entry = _strong[id(pool)] = (pool, describe(pool))
        return entry[1]


def record_wait(state: RequestState, wait: PoolWait) -> None:
    waits: list[PoolWait] = state.facts.setdefault(WAITS, [])
    waits.append(wait)


def seen_in_use(pool_info: PoolInfo, in_use: int) -> None:
    if in_use > pool_info.peak_in_use:
        pool_info.peak_in_use = in_use


def wait_started(pool_info: PoolInfo) -> None:
    pool_info.waiting += 1
    if pool_info.waiting > pool_info.peak_waiting:
        pool_info.peak_waiting = pool_info.waiting


def wait_ended(pool_info: PoolInfo) -> None:
    pool_info.waiting = max(0, pool_info.waiting - 1)


def hold(
    pool_info: PoolInfo, seconds: float, state: RequestState | None, where: Location | None
) -> None:
    pool_info.holds.append((seconds, state, where))


def watch() -> None:
    """Start timing pool waits (counted: every watch needs one unwatch)."""
    global watching
    with _lock:
        watching += 1


def unwatch() -> None:
    global watching
    with _lock:
        watching = max(0, watching - 1)
        if watching == 0:
            _pools.clear()
            _strong.clear()


def waits_of(state: RequestState) -> Iterable[PoolWait]:
    found: list[PoolWait] = state.facts.get(WAITS, [])
    return found
