"""cache_opportunity: the same GET answered with the same body, recomputed every time."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse

from fastprof import FastprofMiddleware
from fastprof.config import ConfigError
from fastprof.detectors import Detector, detector_class, make_detectors
from fastprof.detectors.cache_opportunity import CacheOpportunityDetector
from fastprof.findings import Finding, Location
from fastprof.queries import QueryRecord
from fastprof.queries.base import leftovers
from fastprof.record import RequestState
from tests.conftest import require_service
from tests.queries.test_base import line_of

THIS = str(Path(__file__))
DSN = "postgresql://postgres@127.0.0.1:5432/test"
KIND = "cache_opportunity"


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    yield
    assert not leftovers()


# --- the detector alone, on made-up requests and a fake clock ---------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoint() -> None:  # made-up endpoint
    pass


def read(sql: str = "SELECT * FROM book WHERE id = ?") -> QueryRecord:
    return QueryRecord(sql, (1,), 0.0002, "sqlite3", None, 0.0)


class Driver:
    """Feeds requests to one detector; each call is one second after the previous."""

    def __init__(self, **options: Any) -> None:
        self.detector = CacheOpportunityDetector(**options)
        self.clock = Clock()
        self.detector.clock = self.clock

    def call(
        self,
        body: str = "same",
        *,
        seconds: float = 0.02,
        path: str = "/items/1",
        query: bytes = b"",
        method: str = "GET",
        status: int = 200,
        nbytes: int = 120,
        queries: tuple[QueryRecord, ...] = (),
        gap: float = 1.0,
        start: float | None = None,
    ) -> list[Finding]:
        """One request ending ``gap`` s after the previous one (or started at ``start``)."""
        if start is None:
            self.clock.now += gap
            start = self.clock.now - seconds
        else:
            self.clock.now = start + seconds
        state = RequestState(method, path, start)
        state.route = f"{method} /items/{{item_id}}"
        state.status = status
        state.query = query
        state.queries.extend(queries)
        state.facts.update(
            response_digest=hashlib.blake2b(body.encode(), digest_size=16).hexdigest(),
            response_bytes=nbytes,
            duration=seconds,
            endpoint=endpoint,
        )
        return self.detector.finish(state)

    def calls(self, count: int, **kwargs: Any) -> list[Finding]:
        found: list[Finding] = []
        for _ in range(count):
            found.extend(self.call(**kwargs))
        return found


def test_five_identical_expensive_answers_are_reported_once_at_the_fifth() -> None:
    driver = Driver()
    assert driver.calls(4) == []
    (finding,) = driver.call()
    assert finding.kind == KIND and finding.route == "GET /items/{item_id}"
    assert finding.severity == "medium"
    evidence = finding.evidence
    assert evidence["calls"] == 5 and evidence["identical_responses"] == 4
    assert evidence["hit_rate"] == 0.8
    assert evidence["saved_ms"] == pytest.approx(80.0)
    assert evidence["repeat_mean_ms"] == pytest.approx(20.0)
    assert evidence["repeat_min_ms"] == pytest.approx(20.0)
    assert evidence["mean_ms"] == pytest.approx(20.0)
    assert evidence["example"] == "/items/1"
    assert evidence["distinct_responses"] == 1
    assert evidence["response_bytes"] == 120
    assert evidence["window_s"] == pytest.approx(4.0)
    assert evidence["endpoint"].endswith("test_cache_opportunity.endpoint")
    assert "queries_per_call" not in evidence  # none recorded: unknown
    assert finding.location == Location(THIS, line_of("made-up endpoint", THIS), "endpoint")
    assert "cachetools.TTLCache" in finding.advice and "functools.lru_cache" in finding.advice
    assert "guide 003" in finding.advice and "Cache-Control" in finding.advice
    # Not again on the next calls...
    assert driver.calls(44) == []
    # ... until the calls have grown tenfold.
    (again,) = driver.call()
    assert again.evidence["calls"] == 50 and again.evidence["identical_responses"] == 49


def test_a_body_that_changes_every_time_is_not_reported() -> None:
    driver = Driver()
    assert [f for n in range(20) for f in driver.call(f"at {n}")] == []


def test_hit_rate_below_the_bar_is_not_reported() -> None:
    driver = Driver()
    # Every fourth answer differs: half of the calls repeat the previous body.
    found = [f for n in range(40) for f in driver.call("other" if n % 4 == 0 else "same")]
    assert found == []


def test_min_hit_rate_option() -> None:
    driver = Driver(min_hit_rate=0.5)
    found = [f for n in range(40) for f in driver.call("other" if n % 4 == 0 else "same")]
    (finding,) = found
    assert finding.evidence["calls"] == 8 and finding.evidence["hit_rate"] == 0.5
    assert finding.evidence["distinct_responses"] == 2


def test_a_cache_already_in_place_is_not_reported() -> None:
    # The first call computes (30 ms), the repeats come from the app's cache (0.3 ms).
    driver = Driver()
    assert driver.call(seconds=0.03) == []
    assert driver.calls(20, seconds=0.0003) == []


def test_cheap_answers_are_not_reported_and_min_work_ms_is_the_bar() -> None:
    assert Driver().calls(20, seconds=0.001) == []
    assert len(Driver(min_work_ms=0.5).calls(20, seconds=0.001)) == 1


def test_an_outlier_repeat_does_not_make_cheap_answers_expensive() -> None:
    driver = Driver()
    assert driver.calls(3, seconds=0.0005) == []
    assert driver.call(seconds=0.2) == []  # one slow call (GC, a noisy neighbour)
    assert driver.calls(10, seconds=0.0005) == []


def test_time_spent_queueing_under_load_is_not_work() -> None:
    # A cheap answer (0.4 ms), but under load two calls in three wait for the loop or a thread:
    # the uncontended ones show the work.
    driver = Driver()
    found = [f for n in range(30) for f in driver.call(seconds=0.0004 if n % 3 == 1 else 0.03)]
    assert found == []


def test_calls_alongside_the_first_miss_are_misses_too() -> None:
    # Eight calls at once to an endpoint that caches: all of them compute (the app's cache is
    # empty until the first ends); later calls are served by the app's cache.
    driver = Driver()
    found = [f for n in range(8) for f in driver.call(seconds=0.03 + n * 0.001, start=1000.0)]
    for n in range(10):
        found += driver.call(seconds=0.0004, start=1001.0 + n)
    assert found == []
    # The same burst on an endpoint that does not cache: the later calls are would-be hits.
    driver = Driver()
    found = [f for n in range(8) for f in driver.call(seconds=0.03 + n * 0.001, start=1000.0)]
    assert found == []
    for n in range(2):
        found += driver.call(seconds=0.03, start=1001.0 + n)
    assert found == []  # 2 hits of 10 calls
    for n in range(2, 40):
        found += driver.call(seconds=0.03, start=1001.0 + n)
    (finding,) = found
    assert finding.evidence["identical_responses"] == 32 and finding.evidence["calls"] == 40


def test_a_read_query_is_work_even_when_fast() -> None:
    two = (read(), read("SELECT b.title\nFROM book b"))
    (finding,) = Driver().calls(5, seconds=0.0008, queries=two)
    assert finding.evidence["queries_per_call"] == 2.0
    assert finding.severity == "low"  # qualified through its queries alone


def test_pings_are_not_work() -> None:
    assert Driver().calls(10, seconds=0.0008, queries=(read("SELECT 1"),)) == []


def test_repeats_that_write_are_never_reported() -> None:
    write = read("INSERT INTO visit (path) VALUES (?)")
    driver = Driver()
    assert driver.calls(20, queries=(write, read())) == []


def test_a_first_call_that_writes_does_not_disqualify_the_repeats() -> None:
    driver = Driver()
    assert driver.call(queries=(read("CREATE TABLE IF NOT EXISTS t (x)"),)) == []
    assert len(driver.calls(4)) == 1


def test_the_simulated_cache_expires_after_ttl_s() -> None:
    # Calls 90 s apart: a 60 s cache would have expired before every repeat.
    assert Driver().calls(10, gap=90.0) == []
    assert len(Driver(ttl_s=600).calls(5, gap=90.0)) == 1
    # A 120 s cache, filled at the first call, expires before the third: every other call hits.
    assert Driver(ttl_s=120).calls(20, gap=90.0) == []
    assert len(Driver(ttl_s=120, min_hit_rate=0.5).calls(6, gap=90.0)) == 1


def test_the_key_is_route_path_and_query_string() -> None:
    driver = Driver()
    # The same route, other parameters on every call: nothing a cache keyed by them would hit.
    found = [f for n in range(10) for f in driver.call(path=f"/items/{n}")]
    found += [f for n in range(10) for f in driver.call(query=f"page={n}".encode())]
    assert found == []
    for _ in range(5):
        found += driver.call(query=b"page=2&size=10")
    (finding,) = found
    assert finding.evidence["example"] == "/items/1?page=2&size=10"


def test_only_get_answered_2xx_with_a_body_counts() -> None:
    for kwargs in ({"method": "POST"}, {"status": 404}, {"status": 304}, {"nbytes": 0}):
        assert Driver().calls(10, **kwargs) == [], kwargs


def test_requests_without_a_fingerprint_are_ignored() -> None:
    detector = CacheOpportunityDetector()
    for _ in range(10):
        state = RequestState("GET", "/x", time.perf_counter())
        state.route, state.status = "GET /x", 200
        assert detector.finish(state) == []


def test_saving_a_second_or_more_is_high() -> None:
    (finding,) = Driver().calls(5, seconds=0.3)
    assert finding.severity == "high" and finding.evidence["saved_ms"] == pytest.approx(1200.0)


def test_the_lru_keeps_at_most_max_keys() -> None:
    driver = Driver(max_keys=3)
    for n in range(10):
        driver.call(path=f"/items/{n}")
    assert len(driver.detector._groups) == 3
    # /items/0 was dropped: it starts over and needs five calls again.
    assert driver.calls(4, path="/items/0") == []
    assert len(driver.call(path="/items/0")) == 1


def test_stop_forgets_everything() -> None:
    driver = Driver()
    driver.calls(4)
    driver.detector.stop()
    assert driver.call() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_calls": 1}, "min_calls must be an int >= 2"),
        ({"min_calls": 2.5}, "min_calls must be an int >= 2"),
        ({"min_calls": True}, "min_calls must be an int >= 2"),
        ({"min_hit_rate": 0}, r"min_hit_rate must be in \(0, 1\]"),
        ({"min_hit_rate": 1.5}, r"min_hit_rate must be in \(0, 1\]"),
        ({"min_hit_rate": "high"}, r"min_hit_rate must be in \(0, 1\]"),
        ({"min_work_ms": -1}, "min_work_ms must be >= 0"),
        ({"ttl_s": 0}, "ttl_s must be > 0"),
        ({"max_keys": 0}, "max_keys must be an int >= 1"),
        ({"threshold_ms": 5}, "takes no option"),
    ],
)
def test_options_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CacheOpportunityDetector(**options)
    with pytest.raises(ConfigError, match=message):
        FastprofMiddleware(FastAPI(), detect=[KIND], detector_options={KIND: options})


def test_registered_and_asking_for_the_body() -> None:
    assert detector_class(KIND) is CacheOpportunityDetector
    (made,) = make_detectors([KIND], {KIND: {"min_calls": 3}})
    assert isinstance(made, CacheOpportunityDetector) and made.min_calls == 3
    assert CacheOpportunityDetector.wants_body and not Detector.wants_body


# --- through the middleware -------------------------------------------------------------------


@asynccontextmanager
async def client(app: FastAPI, mw: FastprofMiddleware) -> AsyncIterator[httpx.AsyncClient]:
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=mw)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                yield c
    finally:
        mw.close()


async def fetch_each(
    app: FastAPI, paths: dict[str, int], method: str = "GET", **mw_options: Any
) -> dict[str, list[Finding]]:
    """Call each path ``count`` times; the cache_opportunity findings each one produced."""
    mw_options.setdefault("detect", [KIND])
    mw = FastprofMiddleware(app, **mw_options)
    found: dict[str, list[Finding]] = {}
    async with client(app, mw) as c:
        for path, count in paths.items():
            before = len(mw.store.findings)
            for _ in range(count):
                response = await c.request(method, path)
                assert response.status_code < 500, response.text
            found[path] = [f for f in list(mw.store.findings)[before:] if f.kind == KIND]
    return found


def cpu_app() -> FastAPI:
    app = FastAPI()
    counter = iter(range(1_000_000))
    cache: dict[str, tuple[float, Any]] = {}

    def work(key: str) -> dict[str, Any]:
        time.sleep(0.015)  # stands for 15 ms of real work, in a worker thread
        return {"key": key, "total": 42}

    @app.get("/report/{name}")
    def report(name: str, year: int = 2024) -> dict[str, Any]:  # report endpoint
        return work(f"{name}-{year}")

    @app.get("/cached/{name}")
    def cached(name: str) -> dict[str, Any]:
        entry = cache.get(name)
        if entry is None or entry[0] < time.monotonic():
            entry = cache[name] = (time.monotonic() + 60, work(name))
        return entry[1]  # type: ignore[no-any-return]

    @app.get("/numbered")
    def numbered() -> dict[str, Any]:
        return {"n": next(counter), **work("n")}

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/report/{name}")
    def post_report(name: str) -> dict[str, Any]:
        return work(name)

    @app.get("/missing")
    def missing() -> None:
        work("missing")
        raise HTTPException(404)

    @app.get("/upstream")
    async def upstream() -> dict[str, float]:  # upstream endpoint
        await asyncio.sleep(0.015)  # a slow remote API
        return {"eur": 1.0}

    return app


async def test_an_uncached_expensive_get_is_reported_at_its_endpoint() -> None:
    found = await fetch_each(cpu_app(), {"/report/monthly?year=2023": 6, "/upstream": 5})
    (finding,) = found["/report/monthly?year=2023"]
    assert finding.route == "GET /report/{name}"
    assert finding.location is not None and finding.location.file == THIS
    assert finding.location.line == line_of("report endpoint", THIS)
    assert finding.location.function == "report"
    evidence = finding.evidence
    assert evidence["calls"] == 5 and evidence["identical_responses"] == 4
    assert evidence["example"] == "/report/monthly?year=2023"
    assert evidence["repeat_mean_ms"] >= 15
    assert evidence["response_bytes"] == len(b'{"key":"monthly-2023","total":42}')
    assert evidence["endpoint"].endswith("cpu_app.<locals>.report")
    assert "@cachetools.cached" in finding.advice  # a `def` endpoint
    (upstream,) = found["/upstream"]
    assert upstream.location is not None
    assert upstream.location.line == line_of("upstream endpoint", THIS)
    assert "redis.asyncio" in upstream.advice and "coroutine" in upstream.advice


async def test_the_look_alikes_are_not_reported() -> None:
    app = cpu_app()
    paths = {"/cached/monthly": 8, "/numbered": 8, "/ping": 8, "/missing": 8}
    paths.update({f"/report/r{n}": 1 for n in range(8)})
    found = await fetch_each(app, paths)
    assert found == {path: [] for path in paths}
    posted = await fetch_each(app, {"/report/monthly": 8}, method="POST")
    assert posted == {"/report/monthly": []}


class FactsSeen(Detector):
    """Keeps the facts the middleware gave each request."""

    kind: ClassVar[str] = "facts_seen"
    wants_body: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, bytes, dict[str, Any]]] = []

    def finish(self, state: RequestState) -> list[Finding]:
        self.seen.append((state.method, state.query, dict(state.facts)))
        return []


class FactsSeenWithoutBody(FactsSeen):
    wants_body: ClassVar[bool] = False


async def test_the_middleware_fingerprints_get_bodies_only_when_asked() -> None:
    app = FastAPI()
    chunks = [b"first chunk;", b"", b"second chunk"]

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(body())

    @app.post("/stream")
    async def post_stream() -> dict[str, str]:
        return {"ok": "yes"}

    wanting, not_wanting = FactsSeen(), FactsSeenWithoutBody()
    for detector in (wanting, not_wanting):
        mw = FastprofMiddleware(app, detect=[detector])
        async with client(app, mw) as c:
            assert (await c.get("/stream?a=1&b=2")).content == b"".join(chunks)
            await c.post("/stream")
    (_, query, facts), (post_method, _, post_facts) = wanting.seen
    assert query == b"a=1&b=2" and post_method == "POST"
    expected = hashlib.blake2b(b"".join(chunks), digest_size=16).hexdigest()
    assert facts["response_digest"] == expected
    assert facts["response_bytes"] == len(b"".join(chunks))
    assert facts["duration"] > 0
    assert facts["endpoint"].__name__ == "stream"
    assert "response_digest" not in post_facts  # POST bodies are not fingerprinted
    assert all("response_digest" not in facts for _, _, facts in not_wanting.seen)


async def test_sqlite_reads_are_work_when_queries_are_captured() -> None:
    # A fast query, so only the captured query makes the repeats "work"; duplicate_query runs
    # the query hooks.
    app = FastAPI()
    shared: dict[str, sqlite3.Connection] = {}
    lock = threading.Lock()

    def conn() -> sqlite3.Connection:  # called with the lock held
        if "c" not in shared:  # opened while the hooks are installed, then kept
            shared["c"] = sqlite3.connect(":memory:", check_same_thread=False)
            shared["c"].execute("CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT)")
            shared["c"].execute("INSERT INTO book (title) VALUES ('dune')")
        return shared["c"]

    @app.get("/books")
    def books() -> list[str]:
        with lock:
            return [t for (t,) in conn().execute("SELECT title FROM book ORDER BY id")]

    @app.get("/books/counted")
    def counted() -> list[str]:
        with lock:
            conn().execute("UPDATE book SET title = title")
            return [t for (t,) in conn().execute("SELECT title FROM book ORDER BY id")]

    options = {"detect": [KIND, "duplicate_query"], "detector_options": {KIND: {"min_work_ms": 50}}}
    try:
        found = await fetch_each(app, {"/books": 6, "/books/counted": 6}, **options)
        (finding,) = found["/books"]
        assert finding.evidence["queries_per_call"] == 1.0
        assert found["/books/counted"] == []
        # Without a query-capturing detector, a fast read is indistinguishable from no work.
        alone = await fetch_each(app, {"/books": 6}, detector_options={KIND: {"min_work_ms": 50}})
        assert alone == {"/books": []}
    finally:
        for c in shared.values():
            c.close()


async def test_asyncpg_reads_on_postgres() -> None:
    require_service("postgres", "127.0.0.1", 5432)
    table = f"cache_opportunity_{time.monotonic_ns()}"
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2)
        await pool.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
        await pool.execute(f"INSERT INTO {table} SELECT g, 'n' || g FROM generate_series(1, 50) g")
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.execute(f"DROP TABLE {table}")
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/names")
    async def names(limit: int = 5) -> list[str]:
        rows = await state["pool"].fetch(f"SELECT name FROM {table} ORDER BY id LIMIT $1", limit)
        return [row["name"] for row in rows]

    found = await fetch_each(
        app,
        {"/names?limit=3": 6},
        detect=[KIND, "n_plus_one"],
        detector_options={KIND: {"min_work_ms": 1000}},
    )
    (finding,) = found["/names?limit=3"]
    assert finding.evidence["queries_per_call"] == 1.0
    assert finding.route == "GET /names" and finding.location is not None
    assert finding.location.function == "names"
    assert "redis.asyncio" in finding.advice
