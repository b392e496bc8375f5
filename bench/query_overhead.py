"""What query capture costs per query, over the bare driver.

For each driver a loop of small queries runs in three variants, interleaved: each round runs
every variant in batches of 100 queries, alternating batch by batch with the order rotated,
so that drift and bursts on a shared machine hit all of them alike:

* ``bare`` - the driver as the app has it, no hook installed;
* ``idle`` - the hook installed, the query run outside any request (background work);
* ``request`` - the hook installed, inside a request (a RequestState in the context variable,
  as FastprofMiddleware sets it when detectors are on): every query is recorded.

Reported per driver and variant: the median over rounds of the CPU time per query (this
process's, all threads; wall time on a shared 2-core machine mostly measures the neighbours),
and the overhead ``variant - bare`` as the median of per-round differences (what the targets
use).
Then the cost of finding the user's line (``caller_location``, cached per file) against
``fastprof.findings.user_location`` at the same depth, and a PASS/FAIL line per target:
query capture within 10 us per query over SQLAlchemy, within 3 us over a direct driver.

    .venv/bin/python -m bench.query_overhead                    # about a minute
    .venv/bin/python -m bench.query_overhead --rounds 21 --json bench/results/query_overhead.json
    .venv/bin/python -m bench.query_overhead --no-postgres

PostgreSQL cases need the server on 127.0.0.1:5432 (trust auth, database ``test``); they are
skipped with a note when it is not reachable. Results and method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import platform
import socket
import sqlite3
import statistics
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Mapped  # resolved at run time by the declarative models

from fastprof._context import current_request
from fastprof.findings import user_location
from fastprof.queries import caller_location
from fastprof.queries.base import get_hook
from fastprof.record import RequestState

DSN = "postgresql://postgres@127.0.0.1:5432/test"
VARIANTS = ("bare", "idle", "request")

#: driver -> microseconds of overhead per query allowed for the ``request`` variant.
TARGETS_US = {
    "sqlite3": 3.0,
    "aiosqlite": 3.0,
    "asyncpg": 3.0,
    "sqlalchemy (sqlite)": 10.0,
    "sqlalchemy orm (sqlite)": 10.0,
    "sqlalchemy async (asyncpg)": 10.0,
}


@dataclass
class Result:
    driver: str
    queries: int
    #: variant -> per-round microseconds per query
    rounds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, variant: str) -> float:
        return statistics.median(self.rounds[variant])

    def overhead(self, variant: str) -> float:
        return statistics.median(
            v - b for v, b in zip(self.rounds[variant], self.rounds["bare"], strict=True)
        )


@contextmanager
def in_request() -> Iterator[RequestState]:
    state = RequestState("GET", "/bench", time.perf_counter())
    token = current_request.set(state)
    try:
        yield state
    finally:
        current_request.reset(token)


@contextmanager
def hooks(*names: str) -> Iterator[None]:
    installed = [get_hook(name) for name in names]
    for hook in installed:
        hook.install()
    try:
        yield
    finally:
        for hook in reversed(installed):
            hook.uninstall()


Loop = Callable[[int], None]


def timed(loop: Loop, n: int, variant: str) -> float:
    """CPU microseconds per query of ``loop(n)`` in ``variant``'s context.

    CPU time of this process (all its threads: aiosqlite's worker too), not wall time: the
    hooks cost CPU, and on a shared machine wall time mostly measures the neighbours.
    """
    clock = time.process_time
    if variant == "request":
        with in_request() as state:
            started = clock()
            loop(n)
            elapsed = clock() - started
        assert len(state.queries) >= n, f"expected {n} records, got {len(state.queries)}"
    else:
        started = clock()
        loop(n)
        elapsed = clock() - started
    return elapsed / n * 1e6


#: Queries per batch: a round alternates the variants batch by batch, so that a burst of
#: contention from a neighbour lands on all of them rather than on one.
BATCH = 100


def interleave(driver: str, loops: dict[str, Loop], n: int, rounds: int) -> Result:
    result = Result(driver, n, {v: [] for v in VARIANTS})
    for variant in VARIANTS:  # warm up: caches, statement caches, code paths
        timed(loops[variant], max(100, n // 10), variant)
    batches = max(1, n // BATCH)
    for r in range(rounds):
        spent = dict.fromkeys(VARIANTS, 0.0)
        for b in range(batches):
            shift = (r + b) % 3
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                spent[variant] += timed(loops[variant], BATCH, variant)
        for variant in VARIANTS:
            result.rounds[variant].append(spent[variant] / batches)
    return result


# --- drivers -------------------------------------------------------------------------------


def bench_sqlite3(n: int, rounds: int) -> Result:
    bare = sqlite3.connect(":memory:")
    with hooks("sqlite3"):
        traced = sqlite3.connect(":memory:")

        def loop_on(conn: sqlite3.Connection) -> Loop:
            def loop(count: int) -> None:
                execute = conn.execute
                for i in range(count):
                    execute("SELECT ?", (i,)).fetchone()

            return loop

        result = interleave(
            "sqlite3",
            {"bare": loop_on(bare), "idle": loop_on(traced), "request": loop_on(traced)},
            n,
            rounds,
        )
    bare.close()
    traced.close()
    return result


def bench_sqlalchemy(n: int, rounds: int) -> Result:
    from sqlalchemy import create_engine, text

    statement = text("SELECT :x")
    bare_engine = create_engine("sqlite://")
    bare = bare_engine.connect()
    with hooks("sqlite3", "sqlalchemy"):
        hooked_engine = create_engine("sqlite://")
        hooked = hooked_engine.connect()

        def loop_on(conn: Any) -> Loop:
            def loop(count: int) -> None:
                execute = conn.execute
                for i in range(count):
                    execute(statement, {"x": i}).scalar()

            return loop

        result = interleave(
            "sqlalchemy (sqlite)",
            {"bare": loop_on(bare), "idle": loop_on(hooked), "request": loop_on(hooked)},
            n,
            rounds,
        )
        hooked.close()
        hooked_engine.dispose()
    bare.close()
    bare_engine.dispose()
    return result


def bench_sqlalchemy_orm(n: int, rounds: int) -> Result:
    """ORM selects by primary key through a fresh query each time (do_orm_execute fires)."""
    from sqlalchemy import String, create_engine, select
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "item"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(20))

    def make(engine: Any) -> Session:
        Base.metadata.create_all(engine)
        session = Session(engine)
        session.add_all([Item(id=i, name=f"i{i}") for i in range(100)])
        session.commit()
        return session

    bare = make(create_engine("sqlite://"))
    with hooks("sqlite3", "sqlalchemy"):
        hooked = make(create_engine("sqlite://"))

        def loop_on(session: Session) -> Loop:
            def loop(count: int) -> None:
                for i in range(count):
                    session.execute(select(Item.name).where(Item.id == i % 100)).scalar()

            return loop

        result = interleave(
            "sqlalchemy orm (sqlite)",
            {"bare": loop_on(bare), "idle": loop_on(hooked), "request": loop_on(hooked)},
            n,
            rounds,
        )
        hooked.close()
    bare.close()
    return result


def _async_loop(make: Callable[[int], Awaitable[None]], runner: asyncio.Runner) -> Loop:
    def loop(count: int) -> None:
        # The task runs in a copy of the caller's context, as a request's tasks do: the
        # request timed() set is seen inside (Runner.run's default is its own context).
        runner.run(make(count), context=contextvars.copy_context())  # type: ignore[arg-type]

    return loop


def bench_aiosqlite(n: int, rounds: int) -> Result:
    import aiosqlite

    with asyncio.Runner() as runner:

        async def connect() -> Any:
            return await aiosqlite.connect(":memory:")

        bare = runner.run(connect())

        def loop_on(conn: Any) -> Callable[[int], Awaitable[None]]:
            async def run(count: int) -> None:
                for i in range(count):
                    await conn.execute_fetchall("SELECT ?", (i,))

            return run

        with hooks("sqlite3", "aiosqlite"):
            traced = runner.run(connect())
            result = interleave(
                "aiosqlite",
                {
                    v: _async_loop(loop_on(bare if v == "bare" else traced), runner)
                    for v in VARIANTS
                },
                n,
                rounds,
            )
            runner.run(traced.close())
        runner.run(bare.close())
    return result


def bench_asyncpg(n: int, rounds: int) -> Result:
    import asyncpg

    with asyncio.Runner() as runner:
        bare = runner.run(asyncpg.connect(DSN))
        with hooks("asyncpg"):
            traced = runner.run(asyncpg.connect(DSN))

            def loop_on(conn: Any) -> Callable[[int], Awaitable[None]]:
                async def run(count: int) -> None:
                    fetchval = conn.fetchval
                    for i in range(count):
                        await fetchval("SELECT $1::int", i)

                return run

            result = interleave(
                "asyncpg",
                {
                    v: _async_loop(loop_on(bare if v == "bare" else traced), runner)
                    for v in VARIANTS
                },
                n,
                rounds,
            )
            runner.run(traced.close())
        runner.run(bare.close())
    return result


def bench_sqlalchemy_asyncpg(n: int, rounds: int) -> Result:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    url = DSN.replace("postgresql://", "postgresql+asyncpg://")
    statement = text("SELECT CAST(:x AS int)")
    with asyncio.Runner() as runner:

        async def connect(engine: Any) -> Any:
            return await engine.connect()

        bare_engine = create_async_engine(url)
        bare = runner.run(connect(bare_engine))
        with hooks("asyncpg", "sqlalchemy"):
            hooked_engine = create_async_engine(url)
            hooked = runner.run(connect(hooked_engine))

            def loop_on(conn: Any) -> Callable[[int], Awaitable[None]]:
                async def run(count: int) -> None:
                    for i in range(count):
                        (await conn.execute(statement, {"x": i})).scalar()

                return run

            result = interleave(
                "sqlalchemy async (asyncpg)",
                {
                    v: _async_loop(loop_on(bare if v == "bare" else hooked), runner)
                    for v in VARIANTS
                },
                n,
                rounds,
            )
            runner.run(hooked.close())
            runner.run(hooked_engine.dispose())
        runner.run(bare.close())
        runner.run(bare_engine.dispose())
    return result


# --- finding the user's line ----------------------------------------------------------------


# A stand-in for library code: compiled under the standard library's directory, so that both
# finders take its frames for library frames, as they would SQLAlchemy's.
_LIBRARY_SOURCE = """
def descend(levels, finder):
    if levels:
        return descend(levels - 1, finder)
    return finder()
"""


def bench_location(depth: int, repeat: int) -> dict[str, float]:
    """Microseconds per call of each location finder, ``depth`` library frames below the user
    frame - as in a query hook, where the driver's or ORM's frames stand between."""
    namespace: dict[str, Any] = {}
    filename = os.path.join(sysconfig.get_paths()["stdlib"], "_fastprof_bench_library.py")
    exec(compile(_LIBRARY_SOURCE, filename, "exec"), namespace)
    descend = namespace["descend"]

    def measure(finder: Callable[[], object]) -> float:
        def user_code() -> float:  # the user frame the finders look for
            started = time.process_time()
            for _ in range(repeat):
                descend(depth, finder)
            return (time.process_time() - started) / repeat * 1e6

        baseline = statistics.median(_timed_descent(descend, depth, repeat) for _ in range(7))
        return statistics.median(user_code() for _ in range(7)) - baseline

    def ours() -> object:
        found = caller_location(sys._getframe(1))
        assert found is not None and found.function == "user_code"
        return found

    def theirs() -> object:
        found = user_location(sys._getframe(1))
        assert found is not None and found.function == "user_code"
        return found

    return {"caller_location": measure(ours), "findings.user_location": measure(theirs)}


def _timed_descent(
    descend: Callable[[int, Callable[[], object]], object], depth: int, n: int
) -> float:
    """The descent alone (a finder that does nothing), to subtract."""
    started = time.process_time()
    for _ in range(n):
        descend(depth, _nothing)
    return (time.process_time() - started) / n * 1e6


def _nothing() -> None:
    return None


def bench_sqlite3_trace_callback(n: int, rounds: int) -> Result:
    """The alternative to the factory: ``set_trace_callback`` recording the statement text
    (it gets neither the parameters nor the duration). For comparison only."""
    bare = sqlite3.connect(":memory:")
    traced = sqlite3.connect(":memory:")

    def trace(statement: str) -> None:
        state = current_request.get()
        if state is not None:
            state.queries.append(statement)  # type: ignore[arg-type]

    traced.set_trace_callback(trace)

    def loop_on(conn: sqlite3.Connection) -> Loop:
        def loop(count: int) -> None:
            execute = conn.execute
            for i in range(count):
                execute("SELECT ?", (i,)).fetchone()

        return loop

    result = interleave(
        "sqlite3 via set_trace_callback",
        {"bare": loop_on(bare), "idle": loop_on(traced), "request": loop_on(traced)},
        n,
        rounds,
    )
    bare.close()
    traced.close()
    return result


def postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--queries", type=int, default=5_000, help="per round, local drivers")
    parser.add_argument("--pg-queries", type=int, default=1_000, help="per round, PostgreSQL")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    benches: list[tuple[Callable[[int, int], Result], int]] = [
        (bench_sqlite3, args.queries),
        (bench_sqlite3_trace_callback, args.queries),
        (bench_sqlalchemy, args.queries),
        (bench_sqlalchemy_orm, args.queries // 2),
        (bench_aiosqlite, args.queries // 5),
    ]
    notes = []
    if args.no_postgres:
        notes.append("PostgreSQL skipped (--no-postgres)")
    elif not postgres_up():
        notes.append("PostgreSQL skipped: nothing listens on 127.0.0.1:5432")
    else:
        benches += [(bench_asyncpg, args.pg_queries), (bench_sqlalchemy_asyncpg, args.pg_queries)]

    results = []
    for bench, n in benches:
        result = bench(n, args.rounds)
        results.append(result)
        print(
            f"{result.driver:28} bare {result.median('bare'):8.2f} us/query   "
            f"idle {result.overhead('idle'):+6.2f} us   "
            f"request {result.overhead('request'):+6.2f} us   "
            f"({result.queries} queries x {args.rounds} rounds)",
            flush=True,
        )
    locations = {depth: bench_location(depth, 2000) for depth in (5, 20)}
    for depth, found in locations.items():
        print(
            f"user frame under {depth:2} library levels: caller_location "
            f"{found['caller_location']:.2f} us, findings.user_location "
            f"{found['findings.user_location']:.2f} us"
        )
    for note in notes:
        print(note)
    failed = False
    for result in results:
        if result.driver not in TARGETS_US:
            continue  # a comparison, not a target
        limit = TARGETS_US[result.driver]
        over = result.overhead("request")
        ok = over <= limit
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'} {result.driver}: {over:+.2f} us/query <= {limit} us")
    if args.json:
        payload = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "rounds": args.rounds,
            "results": [
                {
                    **asdict(r),
                    "median_us": {v: r.median(v) for v in VARIANTS},
                    "overhead_us": {v: r.overhead(v) for v in VARIANTS if v != "bare"},
                }
                for r in results
            ],
            "location_us": {str(depth): found for depth, found in locations.items()},
            "notes": notes,
        }
        with open(args.json, "w") as out:
            json.dump(payload, out, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
