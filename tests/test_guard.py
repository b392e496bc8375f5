from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from fastprof._context import current_request
from fastprof.detectors.base import Detector
from fastprof.findings import Finding, Location, user_location
from fastprof.guard import (
    DEFAULT_DETECT,
    FastprofAssertion,
    GuardError,
    forward,
    guard,
    running,
    state_on_thread,
)
from fastprof.queries import record_query
from fastprof.record import RequestState

THIS = str(Path(__file__))


class Repeats(Detector):
    """A stand-in N+1 detector: five or more recorded queries of one statement."""

    kind: ClassVar[str] = "n_plus_one"
    instances: ClassVar[list[Repeats]] = []

    def __init__(self, *, threshold: int = 5) -> None:
        super().__init__()
        self.threshold = threshold
        self.calls: list[str] = []
        Repeats.instances.append(self)

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")

    def finish(self, state: RequestState) -> list[Finding]:
        self.calls.append("finish")
        sqls = [q.sql for q in state.queries]
        repeated = {sql for sql in sqls if sqls.count(sql) >= self.threshold}
        return [
            Finding(
                kind=self.kind,
                severity="high",
                title=f"{sqls.count(sql)} x {sql}",
                evidence={"count": sqls.count(sql), "sql": sql},
                location=next(q.location for q in state.queries if q.sql == sql),
                advice="batch it",
                route=state.route,
            )
            for sql in sorted(repeated)
        ]


class Other(Detector):
    kind: ClassVar[str] = "duplicate_query"

    def finish(self, state: RequestState) -> list[Finding]:
        return [Finding(kind=self.kind, severity="low", title="dup", route=state.route)]


class Failing(Detector):
    kind: ClassVar[str] = "event_loop_blocking"

    def __init__(self, *, threshold_ms: float = 100.0) -> None:
        super().__init__()
        self.threshold_ms = threshold_ms
        self.stopped = False

    def finish(self, state: RequestState) -> list[Finding]:
        raise RuntimeError("detector bug")

    def stop(self) -> None:
        self.stopped = True


def query_loop(count: int) -> None:
    for i in range(count):
        record_query("SELECT name FROM users WHERE id = ?", (i,), 0.0001, "fake")


def test_collects_findings_of_the_block() -> None:
    with guard([Repeats, Other]) as g:
        state = current_request.get()
        assert state is g.state and state is not None
        query_loop(6)
    assert current_request.get() is None
    assert g.state is None
    assert sorted(f.kind for f in g.findings) == ["duplicate_query", "n_plus_one"]
    finding = next(f for f in g.findings if f.kind == "n_plus_one")
    assert finding.evidence["count"] == 6
    assert (
        finding.route == f"{THIS}:{test_collects_findings_of_the_block.__code__.co_firstlineno + 1}"
    )


def test_fail_on_raises_with_the_evidence() -> None:
    with pytest.raises(FastprofAssertion) as raised, guard([Repeats], fail_on=["n_plus_one"]):
        query_loop(7)
    error = raised.value
    assert isinstance(error, AssertionError)
    message = str(error)
    assert "1 problem(s) of a kind the guard fails on: n_plus_one" in message
    assert "count: 7" in message
    assert "sql: SELECT name FROM users WHERE id = ?" in message
    assert "advice: batch it" in message
    assert f"at {THIS}:" in message
    assert [f.kind for f in error.findings] == ["n_plus_one"]


def test_kinds_not_in_fail_on_do_not_raise() -> None:
    with guard([Repeats, Other], fail_on=["n_plus_one"]) as g:
        query_loop(2)
    assert [f.kind for f in g.findings] == ["duplicate_query"]
    assert g.failures() == []


def test_fail_on_true_means_any_finding() -> None:
    with pytest.raises(FastprofAssertion, match="duplicate_query"), guard([Other], fail_on=True):
        pass


def test_no_assertion_over_the_blocks_own_error() -> None:
    g = guard([Repeats], fail_on=["n_plus_one"])
    with pytest.raises(KeyError), g:
        query_loop(9)
        raise KeyError("the test's own failure")
    assert [f.kind for f in g.findings] == ["n_plus_one"]  # still collected
    assert current_request.get() is None


def test_fail_on_kinds_are_started_even_if_not_listed() -> None:
    with guard([Other], fail_on=["slow_serialization"]) as g:
        kinds = [d.kind for d in g.detectors]
    assert kinds == ["duplicate_query", "slow_serialization"]
    assert list(DEFAULT_DETECT) == ["n_plus_one", "event_loop_blocking", "duplicate_query"]


def test_detectors_start_finish_stop_once_per_block() -> None:
    Repeats.instances.clear()
    g = guard([Repeats])
    with g:
        pass
    with g:  # a guard can be reused, one block after another
        pass
    [detector] = Repeats.instances
    assert detector.calls == ["start", "finish", "stop"] * 2


def test_a_failing_detector_fails_the_block_after_stopping_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Repeats.instances.clear()
    detector = Failing()
    g = guard([detector, Repeats], fail_on=["n_plus_one"])
    with pytest.raises(GuardError, match="detector event_loop_blocking failed") as raised, g:
        query_loop(5)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert [f.kind for f in g.findings] == ["n_plus_one"]  # the others still reported
    assert detector.stopped and Repeats.instances[0].calls[-1] == "stop"
    assert "detector event_loop_blocking failed in guard" in caplog.text


def test_a_detector_that_cannot_start_fails_at_once() -> None:
    Repeats.instances.clear()

    class Broken(Detector):
        kind: ClassVar[str] = "broken"

        def start(self) -> None:
            raise OSError("no watchdog today")

    g = guard([Repeats, Broken])
    with pytest.raises(GuardError, match="broken could not start"), g:
        pass
    assert Repeats.instances[0].calls == ["start", "stop"]
    assert current_request.get() is None and g.state is None


def test_threshold_ms_goes_to_event_loop_blocking() -> None:
    g = guard([Failing], threshold_ms=42)
    [detector] = g.detectors
    assert isinstance(detector, Failing) and detector.threshold_ms == 42


def test_nested_use_of_one_guard_is_refused() -> None:
    g = guard([Other])
    with g, pytest.raises(RuntimeError, match="already running"), g:
        pass


def test_watchdog_style_findings_get_the_label() -> None:
    with guard([Other], label="my block") as g:
        assert g.state is not None
        g.state.findings.append(Finding(kind="event_loop_blocking", severity="high", title="t"))
    assert {f.route for f in g.findings} == {"my block"}


async def test_async_block_follows_tasks_and_threads() -> None:
    async def in_task() -> None:
        query_loop(3)

    async with guard([Repeats]) as g:
        await asyncio.gather(in_task(), asyncio.to_thread(query_loop, 3))
        assert state_on_thread(threading.get_ident()) is g.state
    [finding] = g.findings
    assert finding.evidence["count"] == 6  # three from a task, three from a worker thread


async def test_async_fail_on_raises() -> None:
    with pytest.raises(FastprofAssertion):
        async with guard([Repeats], fail_on=["n_plus_one"]):
            await asyncio.to_thread(query_loop, 5)
    assert state_on_thread(threading.get_ident()) is None


def test_state_on_thread_is_the_innermost_guard_running_the_detector() -> None:
    outer_detector, inner_detector = Other(), Repeats()
    with guard([outer_detector]) as outer, guard([inner_detector]) as inner:
        ident = threading.get_ident()
        assert state_on_thread(ident) is inner.state
        assert state_on_thread(ident, outer_detector) is outer.state
        assert state_on_thread(ident, inner_detector) is inner.state
        assert state_on_thread(ident + 1) is None
    assert state_on_thread(ident) is None
    assert running() == []


def test_running_lists_entered_guards() -> None:
    with guard([Other]) as g:
        assert running() == [g]
    assert running() == []


def test_forward_hands_findings_to_the_running_guard() -> None:
    elsewhere = Finding(
        kind="n_plus_one", severity="high", title="from a middleware", route="GET /x"
    )
    forward([elsewhere])  # no guard: nothing happens
    g = guard([Other], fail_on=["n_plus_one"])
    with pytest.raises(FastprofAssertion, match="from a middleware"), g:
        forward([elsewhere])
    assert elsewhere in g.findings


# -- with the real detectors ----------------------------------------------------------------


def n_plus_one_on_sqlite(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}") for i in range(20)])
        names = []
        for user_id in range(20):
            row = connection.execute(  # the-n-plus-one
                "SELECT name FROM users WHERE id = ?", (user_id,)
            ).fetchone()
            names.append(row[0])
        return names
    finally:
        connection.close()


def test_real_n_plus_one_on_sqlite(tmp_path: Path) -> None:
    pytest.importorskip("fastprof.detectors.n_plus_one")
    with pytest.raises(FastprofAssertion) as raised, guard(["n_plus_one"], fail_on=["n_plus_one"]):
        n_plus_one_on_sqlite(tmp_path / "db.sqlite")
    [finding] = raised.value.findings
    assert finding.kind == "n_plus_one"
    assert finding.location is not None and finding.location.file == THIS
    assert "users" in str(raised.value)


def test_real_n_plus_one_clean_code_passes(tmp_path: Path) -> None:
    pytest.importorskip("fastprof.detectors.n_plus_one")
    with guard(["n_plus_one"], fail_on=["n_plus_one"]) as g:
        connection = sqlite3.connect(tmp_path / "db.sqlite")
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("SELECT name FROM users WHERE id IN (1, 2, 3)").fetchall()
        connection.close()
    assert g.findings == []


def test_user_location_inside_a_guard_is_the_users_line() -> None:
    with guard([Other]):
        where: Location | None = user_location()
    assert where is not None and where.file == THIS


async def test_real_event_loop_blocking_in_an_async_guard() -> None:
    pytest.importorskip("fastprof.detectors.event_loop_blocking")
    async with guard(["event_loop_blocking"], threshold_ms=50) as g:
        await asyncio.sleep(0)
        time.sleep(0.3)  # blocks-the-loop
        await asyncio.sleep(0.05)
    found = [f for f in g.findings if f.kind == "event_loop_blocking"]
    assert len(found) == 1
    assert found[0].location is not None and found[0].location.file == THIS


def test_begin_is_called_with_the_blocks_state() -> None:
    class Beginner(Detector):
        kind: ClassVar[str] = "beginner"
        began: ClassVar[list[RequestState]] = []

        def begin(self, state: RequestState) -> None:
            Beginner.began.append(state)

        def finish(self, state: RequestState) -> list[Finding]:
            assert Beginner.began == [state]
            return [Finding(kind=self.kind, severity="low", title="began")]

    with guard([Beginner]) as g:
        assert Beginner.began == [g.state]
    assert [f.title for f in g.findings] == ["began"]
