"""``cache_opportunity``: the same read answered with the same body, recomputed every time.

The middleware fingerprints the body of each GET response for this detector (``wants_body``:
an incremental blake2b-128 of the bytes sent, ``state.facts["response_digest"]``). Requests
are grouped by route, path and query string; per group, a bounded LRU (``max_keys``) keeps a
few counters, so a request costs O(1) here. Only GETs answered 2xx with a non-empty body count.

A TTL cache of ``ttl_s`` seconds is simulated on each group. The body a miss returns is stored
when that request ends; a later call is a *would-be hit* when it started after that (calls
running at the same time as the first would have missed too), at most ``ttl_s`` later, and
returned the same body (a changed body is a miss: a cache would have served stale data). A
group is reported when

* it has ``min_calls`` calls or more,
* its hit rate (would-be hits / calls) is ``min_hit_rate`` or more,
* every would-be hit took ``min_work_ms`` or more - the fastest of them is the work done, as
  waiting for a busy loop or pool only adds time - or at least half of them ran a read query
  (so a cache already in place, whose hits are fast and run no query, is not reported),
* and no would-be hit ran a write (an INSERT/UPDATE... is a side effect a cache would skip).

A group is reported once, and again each time its calls have grown tenfold, at the endpoint's
``def`` line. Severity: medium; high when the would-be hits took 1 s or more; low when they
were fast and qualified through their queries alone. Queries are known only when a
query-capturing detector (n_plus_one, duplicate_query, connection_per_request) runs; without
them the duration is the only work signal.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import CodeType
from typing import Any, ClassVar

from fastprof.advice import advice, installed
from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, Severity, is_user_file
from fastprof.queries import QueryRecord, verb
from fastprof.record import RequestState

#: Statements with side effects a cache would skip.
_WRITES = frozenset(
    {"insert", "update", "delete", "replace", "merge", "upsert", "create", "drop", "alter"}
)
#: A read that touches a table (``SELECT 1``, ``SELECT nextval(...)`` don't).
_FROM = re.compile(r"\bfrom\b", re.IGNORECASE)
#: Distinct bodies remembered per group (evidence only; the hit test needs the last one).
_MAX_DIGESTS = 8
#: Longer query strings are keyed by their hash, so that the LRU's memory stays bounded.
_MAX_QUERY_KEY = 256
#: Share of the would-be hits that must have run a read query for queries to count as work.
_TYPICAL = 0.5


@dataclass(slots=True, eq=False)
class _Group:
    """What is known about one (route, path, query string)."""

    example: str
    first_seen: float
    calls: int = 0
    hits: int = 0
    #: would-be hits that ran a read query
    query_hits: int = 0
    #: the fastest would-be hit (the work itself, without time spent queueing)
    min_hit_s: float = float("inf")
    total_s: float = 0.0
    #: time spent on the would-be hits: what the cache would have saved
    hit_s: float = 0.0
    reads: int = 0
    writes: bool = False
    #: the body the simulated cache holds ("": none), and when it was stored
    cached: str = ""
    filled_at: float = 0.0
    nbytes: int = 0
    digests: set[str] = field(default_factory=set)
    #: calls when last reported (0: never)
    reported: int = 0


class CacheOpportunityDetector(Detector):
    """Identical GET responses recomputed on every call (see the module docstring).

    :param min_calls: calls of the same path and query before it may be reported (default 5).
    :param min_hit_rate: share of those calls a TTL cache would have served (default 0.8).
    :param min_work_ms: the repeats did real work if the fastest took this long (default 5 ms),
        or if half of them ran a read query.
    :param ttl_s: the simulated cache's time to live, seconds (default 60).
    :param max_keys: distinct paths and query strings followed at once, least recent dropped
        first (default 2000).
    """

    kind: ClassVar[str] = "cache_opportunity"
    wants_body: ClassVar[bool] = True

    def __init__(
        self,
        *,
        min_calls: int = 5,
        min_hit_rate: float = 0.8,
        min_work_ms: float = 5.0,
        ttl_s: float = 60.0,
        max_keys: int = 2000,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not _is_int(min_calls) or min_calls < 2:
            raise ValueError(f"cache_opportunity min_calls must be an int >= 2, got {min_calls!r}")
        if not _is_number(min_hit_rate) or not 0 < min_hit_rate <= 1:
            raise ValueError(
                f"cache_opportunity min_hit_rate must be in (0, 1], got {min_hit_rate!r}"
            )
        if not _is_number(min_work_ms) or min_work_ms < 0:
            raise ValueError(f"cache_opportunity min_work_ms must be >= 0, got {min_work_ms!r}")
        if not _is_number(ttl_s) or ttl_s <= 0:
            raise ValueError(f"cache_opportunity ttl_s must be > 0, got {ttl_s!r}")
        if not _is_int(max_keys) or max_keys < 1:
            raise ValueError(f"cache_opportunity max_keys must be an int >= 1, got {max_keys!r}")
        self.min_calls = min_calls
        self.min_hit_rate = float(min_hit_rate)
        self.min_work = min_work_ms / 1000
        self.ttl = float(ttl_s)
        self.max_keys = max_keys
        #: Seconds, the same clock as ``RequestState.started`` (tests replace it).
        self.clock: Callable[[], float] = time.perf_counter
        self._groups: OrderedDict[tuple[str, str, bytes], _Group] = OrderedDict()
        self._lock = threading.Lock()

    def stop(self) -> None:
        with self._lock:
            self._groups.clear()

    def finish(self, state: RequestState) -> list[Finding]:
        digest = state.facts.get("response_digest")
        if digest is None or state.method != "GET" or not 200 <= state.status < 300:
            return []
        nbytes = int(state.facts.get("response_bytes", 0))
        if nbytes <= 0:  # 204, HEAD-like answers: nothing a cache would keep
            return []
        now = self.clock()
        duration = state.facts.get("duration")
        seconds = float(duration) if duration is not None else now - state.started
        started = state.started
        reads, writes = _reads_and_writes(state.queries)
        query = state.query
        key = (
            state.route,
            state.path,
            query if len(query) <= _MAX_QUERY_KEY else hashlib.blake2b(query).digest(),
        )
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(_example(state.path, query), now)
                if len(self._groups) > self.max_keys:
                    self._groups.popitem(last=False)
            else:
                self._groups.move_to_end(key)
            self._count(group, digest, started, seconds, reads, writes, nbytes)
            if not self._due(group):
                return []
            group.reported = group.calls
            return [self._finding(state, group, now)]

    def _count(
        self,
        group: _Group,
        digest: str,
        started: float,
        seconds: float,
        reads: int,
        writes: bool,
        nbytes: int,
    ) -> None:
        group.calls += 1
        group.total_s += seconds
        group.reads += reads
        group.nbytes = nbytes
        stored = group.cached != "" and started <= group.filled_at + self.ttl
        if stored and digest == group.cached and started >= group.filled_at:
            group.hits += 1
            group.hit_s += seconds
            group.min_hit_s = min(group.min_hit_s, seconds)
            if reads:
                group.query_hits += 1
            # A repeat that writes has a side effect a cache would skip (a miss may write:
            # the first call filling a lazily created table is no reason to keep recomputing).
            group.writes = group.writes or writes
        elif not stored or digest != group.cached:
            # A miss: the cache stores this body when the request ends. (A call that ran
            # alongside the one that stored the same body leaves the entry as it is.)
            group.cached = digest
            group.filled_at = started + seconds
        if len(group.digests) < _MAX_DIGESTS:
            group.digests.add(digest)

    def _due(self, group: _Group) -> bool:
        return (
            not group.writes
            and group.calls >= self.min_calls
            and group.hits / group.calls >= self.min_hit_rate
            and (group.min_hit_s >= self.min_work or group.query_hits >= _TYPICAL * group.hits)
            and (not group.reported or group.calls >= 10 * group.reported)
        )

    def _finding(self, state: RequestState, group: _Group, now: float) -> Finding:
        endpoint = state.facts.get("endpoint")
        calls, hits = group.calls, group.hits
        hit_rate = hits / calls
        saved_ms = group.hit_s * 1000
        repeat_ms = saved_ms / hits
        evidence: dict[str, Any] = {
            "example": group.example,
            "calls": calls,
            "identical_responses": hits,
            "hit_rate": round(hit_rate, 3),
            "ttl_s": self.ttl,
            "mean_ms": round(group.total_s * 1000 / calls, 2),
            "repeat_mean_ms": round(repeat_ms, 2),
            "repeat_min_ms": round(group.min_hit_s * 1000, 2),
            "saved_ms": round(saved_ms, 1),
            "distinct_responses": len(group.digests),
            "response_bytes": group.nbytes,
            "window_s": round(now - group.first_seen, 2),
        }
        if group.reads:
            evidence["queries_per_call"] = round(group.reads / calls, 2)
        name = _qualname(endpoint)
        if name is not None:
            evidence["endpoint"] = name
        facts: dict[str, Any] = {
            "example": group.example,
            "calls": calls,
            "hits": hits,
            "hit_rate": hit_rate,
            "ttl_s": self.ttl,
            "repeat_ms": repeat_ms,
            "saved_ms": saved_ms,
            "is_async": _is_async(endpoint),
            "redis": installed("redis"),
            "cachetools": installed("cachetools"),
        }
        # Repeats that qualified through their queries alone (fast ones) are "low".
        severity: Severity = (
            "high"
            if group.hit_s >= 1.0
            else "medium"
            if group.min_hit_s >= self.min_work
            else "low"
        )
        return Finding(
            kind=self.kind,
            severity=severity,
            title=(
                f"Same response recomputed: {group.example} answered {calls} times, "
                f"{hits} identical repeats a {self.ttl:g} s cache would have served "
                f"({hit_rate:.0%}, {saved_ms:.0f} ms of work)"
            ),
            evidence=evidence,
            location=_endpoint_location(endpoint),
            advice=advice(self.kind, **facts),
            route=state.route or None,
        )


def _reads_and_writes(queries: Sequence[QueryRecord]) -> tuple[int, bool]:
    """Read queries that touched a table (``SELECT 1`` pings don't count), and any write."""
    reads = 0
    writes = False
    for record in queries:
        word = verb(record.sql)
        if word in _WRITES:
            writes = True
        elif word == "select" and _FROM.search(record.sql) is not None:
            reads += 1
    return reads, writes


def _example(path: str, query: bytes) -> str:
    if not query:
        return path
    text = query.decode("latin-1")
    return f"{path}?{text if len(text) <= 200 else text[:197] + '...'}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _code(endpoint: Any) -> CodeType | None:
    if endpoint is None:
        return None
    code = getattr(inspect.unwrap(endpoint), "__code__", None)
    return code if isinstance(code, CodeType) else None


def _qualname(endpoint: Any) -> str | None:
    if endpoint is None:
        return None
    target = inspect.unwrap(endpoint)
    name = getattr(target, "__qualname__", None)
    module = getattr(target, "__module__", None)
    if not isinstance(name, str):
        return None
    return f"{module}.{name}" if isinstance(module, str) else name


def _is_async(endpoint: Any) -> bool:
    return endpoint is not None and inspect.iscoroutinefunction(inspect.unwrap(endpoint))


def _endpoint_location(endpoint: Any) -> Location | None:
    """The endpoint's ``def`` line (where a cache goes), in user code only."""
    code = _code(endpoint)
    if code is None or not is_user_file(code.co_filename):
        return None
    return Location(code.co_filename, _def_line(code), code.co_name)


@lru_cache(maxsize=256)
def _def_line(code: CodeType) -> int:
    """The ``def`` line: ``co_firstlineno`` is the first decorator's."""
    try:
        lines, start = inspect.getsourcelines(code)
    except (OSError, TypeError):
        return code.co_firstlineno
    for offset, text in enumerate(lines):
        if text.lstrip().startswith(("def ", "async def ")):
            return start + offset
    return code.co_firstlineno
