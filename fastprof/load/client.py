"""An HTTP/1.1 keep-alive load client on asyncio Protocols: :func:`run_load`.

How it loads
    ``concurrency`` connections, each driven by one worker, opened lazily and kept alive.

    Closed loop (``rate=None``, the default): a worker sends a request, waits for the whole
    response, and sends the next one at once, like wrk. Latency is measured from the start of
    the request (including a connect when the worker needs a new connection) to the last byte
    of the response.

    Open loop (``rate=`` requests per second): request *i* is due at ``start + i / rate``,
    whether or not earlier ones have been answered; the first free worker takes it. When all
    ``concurrency`` connections are busy, due requests wait, and their latency is measured from
    the time they were due, not from when they were sent. This is the correction for
    coordinated omission (Gil Tene's term): a closed loop stops sending while the server
    stalls, so the stall is recorded once instead of once for every request a steady client
    would have sent meanwhile, and high percentiles come out too good. With ``rate`` set, a
    stall shows up in every request scheduled during it. Give enough connections for the rate
    (``concurrency`` >= ``rate`` x expected latency) or the queue itself becomes the latency.

Counting
    Warm-up: for the first ``warmup`` seconds requests are sent but not counted - unless their
    response (or timeout, or error) comes after the warm-up: a request slower than the warm-up
    counts, so that a route slower than the warm-up still shows up in the result. Measurement
    then lasts ``duration`` seconds and/or ``requests`` counted requests, whichever ends first
    (pass ``duration=None`` for an exact count; at least one must be set). Requests started
    before the end are waited for, each bounded by ``timeout``, so a slow request is never
    dropped from the statistics; ``LoadResult.duration`` runs from the end of the warm-up to
    the last counted response.

    Every counted request lands in ``status_counts`` (0 = no response: a connection error or a
    timeout). It is an error when it had no response, when its status differs from the spec's
    ``expect_status``, or, without ``expect_status``, when the status is 400 or more. The
    latency histogram holds every request that got a response, errors included; timeouts and
    connection errors are not in it (their number is in ``timeouts`` and ``errors``).

Connections
    A response with ``Connection: close`` (or framed by the end of the connection), a timeout,
    or any error closes the connection; the worker reconnects for its next request (in a closed
    loop after a 10 ms pause, so that a server failing fast is not hammered). A request on a
    connection that had been idle for a second or more is retried once on a new connection if
    the old one turns out to have been closed by the server before it answered (the keep-alive
    timeout race).

``timeout`` bounds each request from the moment it is sent (connect, write, response). It is
enforced by a watchdog that wakes every 50 ms (or a tenth of ``timeout``, if less), so a
timeout fires up to that much late.

The client does not choose the event loop. Under uvloop it spends less CPU per request than
under asyncio's own loop: 9.3 vs 11 µs on a quiet machine, 10 vs 27-31 µs on a busy one
(bench/loadclient.py); :func:`fastprof.load.loop_factory` picks uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TypedDict
from urllib.parse import quote

from fastprof.load.connection import Connection, ConnectionClosed
from fastprof.load.histogram import Histogram, LatencySummary
from fastprof.load.parser import BODY_HEAD, ProtocolError

#: At most this many distinct error descriptions are kept.
MAX_ERROR_SAMPLES = 10
#: Pause of a closed-loop worker after a request without a response.
RECONNECT_PAUSE = 0.01
#: A request on a connection idle this long is retried once if the server had closed it.
STALE_AFTER = 1.0
#: The watchdog that enforces timeouts wakes at most this far apart.
WATCHDOG_TICK = 0.05
#: on_progress is called at most this often (and once at the end).
PROGRESS_EVERY = 0.1

_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"
_DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding"})


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One kind of request to send.

    ``path`` includes the query string (``"/items/1?x=2"``); characters not allowed in a
    request target (spaces, non-ASCII) are percent-encoded, existing ``%XX`` escapes kept.
    ``Host`` is added unless given; ``Content-Length`` is computed from ``body`` (and any
    ``Content-Length`` or ``Transfer-Encoding`` in ``headers`` is dropped). ``weight`` is the
    relative frequency among the specs of one run; a response whose status differs from
    ``expect_status`` counts as an error. ``name`` is a free label, e.g. a route key.
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    weight: float = 1.0
    expect_status: int | None = None
    name: str = ""


class LoadResultDict(TypedDict):
    requests: int
    errors: int
    rps: float
    duration: float
    latency_ms: LatencySummary
    status_counts: dict[str, int]
    error_samples: list[str]
    timeouts: int


@dataclass(slots=True)
class LoadResult:
    """What a run measured; see the module docstring for what counts."""

    requests: int
    errors: int
    duration: float
    latency: Histogram
    status_counts: dict[int, int]
    error_samples: list[str]
    timeouts: int

    @property
    def rps(self) -> float:
        """Counted requests per second of measured load."""
        return self.requests / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> LoadResultDict:
        """JSON-able; ``status_counts`` keys become strings, as JSON needs."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.rps, 3),
            "duration": round(self.duration, 6),
            "latency_ms": self.latency.summary_ms(),
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "error_samples": list(self.error_samples),
            "timeouts": self.timeouts,
        }


# -- requests on the wire ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    data: bytes
    label: str
    expect_status: int | None
    head: bool


def _prepare(spec: RequestSpec, host_header: str) -> _Prepared:
    method = spec.method.strip().upper()
    if not method.isalpha():
        raise ValueError(f"not an HTTP method: {spec.method!r}")
    path = quote(spec.path, safe=_PATH_SAFE)
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/': {spec.path!r}")
    lines = [f"{method} {path} HTTP/1.1"]
    if not any(name.lower() == "host" for name, _ in spec.headers):
        lines.append(f"Host: {host_header}")
    for name, value in spec.headers:
        if any(c in name for c in ":\r\n ") or "\r" in value or "\n" in value:
            raise ValueError(f"invalid header {name!r}: {value!r}")
        if name.lower() not in _DROPPED_HEADERS:
            lines.append(f"{name}: {value}")
    body = spec.body or b""
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"header of {spec.method} {spec.path} is not latin-1: {exc}") from None
    return _Prepared(head + body, f"{method} {path}", spec.expect_status, method == "HEAD")


# -- what to send when -------------------------------------------------------------------------


class Schedule:
    """Hands out requests to workers: ``claim`` returns (request index, due time, counted).

    The due time is a ``time.perf_counter()`` value, or None to send at once (closed loop).
    None instead of a tuple stops the worker. Subclasses set ``measure_start``.
    """

    measure_start: float = 0.0

    def claim(self, now: float) -> tuple[int, float | None, bool] | None:
        raise NotImplementedError

    def count_late(self) -> bool:
        """Whether to count a request claimed uncounted whose outcome came after the warm-up."""
        return True


class _Picker:
    """Weighted random choice of a spec index."""

    def __init__(self, weights: Sequence[float]) -> None:
        if any(not w >= 0 or math.isinf(w) for w in weights):
            raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
        self.cumulative = list(accumulate(weights))
        self.total = self.cumulative[-1]
        if self.total <= 0:
            raise ValueError("at least one spec needs a weight > 0")
        self.single = sum(1 for w in weights if w > 0) == 1
        self.only = next(i for i, w in enumerate(weights) if w > 0)
        self.random = random.random

    def pick(self) -> int:
        if self.single:
            return self.only
        return bisect_right(self.cumulative, self.random() * self.total)


class _LoadSchedule(Schedule):
    def __init__(
        self,
        picker: _Picker,
        start: float,
        warmup: float,
        duration: float | None,
        requests: int | None,
        rate: float | None,
    ) -> None:
        self.picker = picker
        self.start = start
        self.measure_start = start + warmup
        self.end = math.inf if duration is None else self.measure_start + duration
        self.left = math.inf if requests is None else requests
        self.interval = None if rate is None else 1.0 / rate
        self.slot = 0

    def claim(self, now: float) -> tuple[int, float | None, bool] | None:
        if self.interval is None:
            due = None
            when = now
        else:
            due = when = self.start + self.slot * self.interval
            self.slot += 1
        if when >= self.end or self.left <= 0:
            return None
        counted = when >= self.measure_start
        if counted:
            self.left -= 1
        return self.picker.pick(), due, counted

    def count_late(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


# -- the run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    last_done: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    status_counts: dict[int, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def error(self, description: str) -> None:
        self.errors += 1
        samples = self.error_samples
        if len(samples) < MAX_ERROR_SAMPLES and description not in samples:
            samples.append(description)


class _Run:
    def __init__(
        self,
        host: str,
        port: int,
        prepared: Sequence[_Prepared],
        schedule: Schedule,
        timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.prepared = prepared
        self.schedule = schedule
        self.timeout = timeout
        self.tally = _Tally()
        self.connections: set[Connection] = set()
        self.failure: Exception | None = None
        self.loop = asyncio.get_running_loop()

    async def _connect(self) -> Connection:
        _, conn = await asyncio.wait_for(
            self.loop.create_connection(lambda: Connection(self.loop), self.host, self.port),
            self.timeout,
        )
        self.connections.add(conn)
        return conn

    def _drop(self, conn: Connection | None) -> None:
        if conn is not None:
            conn.close()
            self.connections.discard(conn)

    async def worker(self) -> None:
        conn: Connection | None = None
        perf_counter = time.perf_counter
        tally = self.tally
        latency = tally.latency
        status_counts = tally.status_counts
        schedule = self.schedule
        try:
            while True:
                claim = schedule.claim(perf_counter())
                if claim is None:
                    return
                index, due, counted = claim
                if due is not None:
                    delay = due - perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                request = self.prepared[index]
                started = perf_counter()
                try:
                    conn = await self._exchange(conn, request, started)
                except BaseException as exc:
                    self._drop(conn)
                    conn = None
                    if not isinstance(exc, Exception):
                        raise
                    if not counted and perf_counter() >= schedule.measure_start:
                        counted = schedule.count_late()
                    if counted:
                        status_counts[0] = status_counts.get(0, 0) + 1
                        tally.requests += 1
                        tally.last_done = perf_counter()
                        if isinstance(exc, TimeoutError):
                            tally.timeouts += 1
                        tally.error(f"{request.label}: {self._describe(exc)}")
                    if due is None:  # closed loop: do not spin on a server that fails fast
                        await asyncio.sleep(RECONNECT_PAUSE)
                    continue
                done = perf_counter()
                parser = conn.parser
                if not counted and done >= schedule.measure_start:
                    counted = schedule.count_late()
                if counted:
                    status = parser.status
                    latency.record(done - (started if due is None else due))
                    status_counts[status] = status_counts.get(status, 0) + 1
                    tally.requests += 1
                    tally.last_done = done
                    expect = request.expect_status
                    if (status != expect) if expect is not None else (status >= 400):
                        body = parser.body_head[:BODY_HEAD].decode("utf-8", "replace")
                        tally.error(f"{request.label} -> {status}: {body}")
                if not parser.keep_alive or conn.closed:
                    self._drop(conn)
                    conn = None
        finally:
            self._drop(conn)

    async def _exchange(
        self, conn: Connection | None, request: _Prepared, started: float
    ) -> Connection:
        """Send ``request`` and wait for its response; the connection it was answered on."""
        for attempt in (0, 1):
            fresh = conn is None or conn.closed
            if conn is None or conn.closed:
                self._drop(conn)
                conn = await self._connect()
            stale = not fresh and started - conn.idle_since >= STALE_AFTER
            waiter = conn.send(request.data, request.head, started + self.timeout)
            try:
                await waiter
                return conn
            except ConnectionClosed:
                if not stale or attempt or conn.parser.started:
                    raise
                self._drop(conn)
                conn = None
        raise AssertionError("unreachable")

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"timeout after {self.timeout:g}s"
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, ConnectionClosed):
            return "connection closed before the response was complete"
        if isinstance(exc, ProtocolError):
            return f"invalid response: {exc}"
        return f"{type(exc).__name__}: {exc}"[:200]

    async def watchdog(self) -> None:
        tick = min(WATCHDOG_TICK, self.timeout / 10)
        while True:
            await asyncio.sleep(tick)
            now = time.perf_counter()
            for conn in list(self.connections):
                if conn.closed:
                    self.connections.discard(conn)
                elif conn.deadline <= now:
                    self.connections.discard(conn)
                    conn.timed_out(TimeoutError())

    async def progress(
        self, on_progress: Callable[[int], None], workers: list[asyncio.Task[None]]
    ) -> None:
        last = -1
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            if self.tally.requests != last:
                last = self.tally.requests
                try:
                    on_progress(last)
                except Exception as exc:  # stop the run and raise it from there
                    self.failure = exc
                    for task in workers:
                        task.cancel()
                    return

    async def execute(
        self, concurrency: int, on_progress: Callable[[int], None] | None
    ) -> LoadResult:
        workers = [asyncio.create_task(self.worker()) for _ in range(concurrency)]
        helpers = [asyncio.create_task(self.watchdog())]
        if on_progress is not None:
            helpers.append(asyncio.create_task(self.progress(on_progress, workers)))
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            if self.failure is None:
                raise
        finally:
            for task in workers + helpers:
                task.cancel()
            await asyncio.gather(*workers, *helpers, return_exceptions=True)
            for conn in list(self.connections):
                self._drop(conn)
        if self.failure is not None:
            raise self.failure
        tally = self.tally
        if on_progress is not None:
            on_progress(tally.requests)
        start = self.schedule.measure_start
        end = tally.last_done if tally.requests else max(start, time.perf_counter())
        return LoadResult(
            requests=tally.requests,
            errors=tally.errors,
            duration=max(0.0, end - start),
            latency=tally.latency,
            status_counts=tally.status_counts,
            error_samples=tally.error_samples,
            timeouts=tally.timeouts,
        )


def host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_common(host: str, port: int, concurrency: int, timeout: float) -> None:
    if not host:
        raise ValueError("host is empty")
    if not 0 < port < 65536:
        raise ValueError(f"port must be within 1-65535, got {port}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")


async def execute(
    host: str,
    port: int,
    specs: Sequence[RequestSpec],
    schedule: Schedule,
    *,
    concurrency: int,
    timeout: float,
    on_progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Run ``schedule`` over ``specs`` (indexes into it); what :func:`run_load` and replay share."""
    check_common(host, port, concurrency, timeout)
    prepared = [_prepare(spec, host_header(host, port)) for spec in specs]
    return await _Run(host, port, prepared, schedule, timeout).execute(concurrency, on_progress)


async def run_load(
    host: str,
    port: int,
    specs: Sequence[RequestSpec],
    *,
    concurrency: int = 10,
    duration: float | None = 5.0,
    requests: int | None = None,
    rate: float | None = None,
    warmup: float = 0.5,
    timeout: float = 10.0,
    on_progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Load ``host:port`` with ``specs``, chosen at random by weight; see the module docstring.

    ``on_progress`` is called with the number of counted requests completed so far, at most
    every 0.1 s and once at the end; an exception it raises stops the run and is raised here.
    """
    if not specs:
        raise ValueError("no request specs to send")
    if duration is None and requests is None:
        raise ValueError("give duration or requests (or both): the run must end")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    if requests is not None and requests < 1:
        raise ValueError(f"requests must be at least 1, got {requests}")
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be > 0, got {rate}")
    if not warmup >= 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    picker = _Picker([spec.weight for spec in specs])
    schedule = _LoadSchedule(picker, time.perf_counter(), warmup, duration, requests, rate)
    return await execute(
        host,
        port,
        specs,
        schedule,
        concurrency=concurrency,
        timeout=timeout,
        on_progress=on_progress,
    )
