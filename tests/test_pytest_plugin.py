from __future__ import annotations

import importlib.metadata
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = '''
import asyncio
import sqlite3
import sys

import pytest

from fastprof.detectors.base import Detector
from fastprof.findings import Finding, user_location
from fastprof.queries import fingerprint, record_query


class FakeNPlusOne(Detector):
    """Five or more queries of one shape: an N+1 (stands in for the real detector)."""

    kind = "n_plus_one"

    def finish(self, state):
        shapes = [fingerprint(q.sql) for q in state.queries]
        found = []
        for shape in sorted(set(shapes)):
            count = shapes.count(shape)
            if count >= 5:
                first = state.queries[shapes.index(shape)]
                found.append(Finding(
                    kind=self.kind, severity="high", title=f"{count} queries of one shape",
                    evidence={"queries": count, "fingerprint": shape},
                    location=first.location, advice="load them in one query", route=state.route,
                ))
        return found


class LoopProbe(Detector):
    """Says whether an event loop was running when the guard started it."""

    kind = "event_loop_blocking"

    def start(self):
        self.loop_running = asyncio._get_running_loop() is not None

    def finish(self, state):
        return [Finding(kind=self.kind, severity="low",
                        title=f"loop running at start: {self.loop_running}", route=state.route)]


def _trace(sql):
    # sqlite3 calls this from the line that ran the statement: record it there
    record_query(sql, None, 0.0, "sqlite3", location=user_location(sys._getframe(1)))


@pytest.fixture
def db(tmp_path):
    connection = sqlite3.connect(tmp_path / "db.sqlite")
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}") for i in range(20)])
    connection.set_trace_callback(_trace)
    yield connection
    connection.close()
'''

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def plugin_args() -> list[str]:
    """Load the plugin by hand unless the installed distribution registers it already."""
    for entry in importlib.metadata.entry_points(group="pytest11"):
        if entry.value == "fastprof.pytest_plugin":
            return []
    return ["-p", "fastprof.pytest_plugin"]


@pytest.fixture
def tester(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", *args)


def line_of(source: str, marker: str) -> int:
    # makepyfile dedents and strips the source, as this does
    for number, text in enumerate(textwrap.dedent(source).strip().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)


N_PLUS_ONE_TESTS = """
import pytest
from conftest import FakeNPlusOne


@pytest.mark.fastprof(detect=[FakeNPlusOne], fail_on=["n_plus_one"])
def test_n_plus_one(db):
    names = []
    for user_id in range(20):
        row = db.execute("SELECT name FROM users WHERE id = ?", (user_id,)).fetchone()  # loop
        names.append(row[0])
    assert len(names) == 20


@pytest.mark.fastprof(detect=[FakeNPlusOne], fail_on=["n_plus_one"])
def test_one_query(db):
    rows = db.execute("SELECT name FROM users WHERE id IN (1, 2, 3)").fetchall()
    assert len(rows) == 3
"""


def test_marked_test_fails_on_n_plus_one_with_the_evidence(tester: pytest.Pytester) -> None:
    tester.makepyfile(test_users=N_PLUS_ONE_TESTS)
    result = run(tester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*FastprofAssertion: fastprof found 1 problem(s) of a kind the guard fails on: *",
            "*[[]high[]] n_plus_one: 20 queries of one shape",
            f"*at *test_users.py:{line_of(N_PLUS_ONE_TESTS, 'loop')} in test_n_plus_one",
            "*queries: 20",
            "*fingerprint: select name from users where id = ?",
            "*advice: load them in one query",
            "FAILED test_users.py::test_n_plus_one*",
        ]
    )


def test_unmarked_tests_are_left_alone(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_users="""
        def test_n_plus_one(db):
            for user_id in range(20):
                db.execute("SELECT name FROM users WHERE id = ?", (user_id,)).fetchone()
        """
    )
    run(tester).assert_outcomes(passed=1)


def test_fixture_guards_the_test(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_users="""
        import pytest
        from conftest import FakeNPlusOne

        @pytest.mark.fastprof(detect=[FakeNPlusOne])
        def test_with_fixture(db, fastprof_guard):
            assert fastprof_guard.state is not None  # the guard runs around the body
            for user_id in range(6):
                db.execute("SELECT name FROM users WHERE id = ?", (user_id,)).fetchone()

        def test_fixture_alone_uses_the_defaults(fastprof_guard):
            assert fastprof_guard.fail_on == {"n_plus_one", "event_loop_blocking"}
        """
    )
    result = run(tester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*n_plus_one: 6 queries of one shape*"])


def test_async_tests_are_guarded_inside_their_loop(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_loop="""
        import asyncio
        import pytest
        from conftest import LoopProbe

        @pytest.mark.fastprof(detect=[LoopProbe], fail_on=["event_loop_blocking"])
        async def test_async():
            await asyncio.sleep(0)

        @pytest.mark.fastprof(detect=[LoopProbe], fail_on=["event_loop_blocking"])
        def test_sync():
            pass
        """
    )
    result = run(tester)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_async _*",
            "FastprofAssertion: fastprof found 1 problem(s)*: event_loop_blocking",
            "[[]low[]] event_loop_blocking: loop running at start: True",
            "*_ test_sync _*",
            "[[]low[]] event_loop_blocking: loop running at start: False",
        ]
    )


def test_findings_not_failed_on_are_reported_in_a_section(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_loop="""
        import pytest
        from conftest import LoopProbe

        @pytest.mark.fastprof(detect=[LoopProbe], fail_on=[])
        def test_sync():
            pass
        """
    )
    result = run(tester, "-rP")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*Captured fastprof call*", "*loop running at start: False*"])


def test_marker_arguments_are_checked(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.fastprof(fail_on=["n_plus_one"], treshold_ms=5)
        def test_typo():
            pass
        """
    )
    result = run(tester)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*unknown argument(s) treshold_ms*"])


def test_marker_is_registered_for_strict_markers(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        test_ok="""
        import pytest

        @pytest.mark.fastprof(fail_on=[])
        def test_marked():
            pass
        """
    )
    run(tester, "--strict-markers").assert_outcomes(passed=1)
    result = run(tester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.fastprof(fail_on=*"])


REAL_N_PLUS_ONE = """
import sqlite3
import pytest


def load_names(path):
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.executemany("INSERT INTO users VALUES (?, ?)", [(i, f"u{i}") for i in range(20)])
    names = [
        connection.execute("SELECT name FROM users WHERE id = ?", (i,)).fetchone()[0]  # n+1
        for i in range(20)
    ]
    connection.close()
    return names


def load_names_at_once(path):
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    rows = connection.execute("SELECT name FROM users WHERE id IN (1, 2, 3)").fetchall()
    connection.close()
    return rows


def test_n_plus_one(tmp_path):
    assert len(load_names(tmp_path / "db.sqlite")) == 20


def test_clean(tmp_path):
    load_names_at_once(tmp_path / "db.sqlite")


@pytest.mark.fastprof(fail_on=[])
def test_exempt(tmp_path):
    load_names(tmp_path / "db.sqlite")
"""


def test_fastprof_option_guards_every_test_with_the_real_detectors(
    tester: pytest.Pytester,
) -> None:
    pytest.importorskip("fastprof.detectors.n_plus_one")
    pytest.importorskip("fastprof.detectors.event_loop_blocking")
    pytest.importorskip("fastprof.detectors.duplicate_query")
    tester.makepyfile(test_real=REAL_N_PLUS_ONE)
    result = run(tester, "--fastprof")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*FastprofAssertion: fastprof found 1 problem(s)*: n_plus_one",
            f"*at *test_real.py:{line_of(REAL_N_PLUS_ONE, 'n+1')} in *",
            "FAILED test_real.py::test_n_plus_one*",
        ]
    )
    # without the option, the same tests are not guarded
    run(tester).assert_outcomes(passed=3)


def test_plugin_loads_through_its_entry_point(
    tester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not plugin_args():
        found = [
            e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "fastprof"
        ]
        assert [e.value for e in found] == ["fastprof.pytest_plugin"]
    else:
        # Not installed with the entry point yet: register it the way an install would.
        dist = tmp_path / "site" / "fastprof_plugin_probe-0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fastprof-plugin-probe\n")
        (dist / "entry_points.txt").write_text("[pytest11]\nfastprof = fastprof.pytest_plugin\n")
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    assert 'fastprof = "fastprof.pytest_plugin"' in pyproject.read_text()
    result = tester.runpytest("-p", "no:cacheprovider", "--help")
    result.stdout.fnmatch_lines(["*--fastprof*guard every test*"])


def test_anyio_tests_are_guarded_inside_their_loop(tester: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    tester.makepyfile(
        test_anyio="""
        import anyio
        import pytest
        from conftest import LoopProbe

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        @pytest.mark.fastprof(detect=[LoopProbe], fail_on=["event_loop_blocking"])
        async def test_with_anyio():
            await anyio.sleep(0)
        """
    )
    result = run(tester, "-p", "no:asyncio")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["[[]low[]] event_loop_blocking: loop running at start: True"])


def test_an_autouse_fixture_guards_a_whole_directory(tester: pytest.Pytester) -> None:
    tester.makeconftest(
        CONFTEST
        + """

@pytest.fixture(autouse=True)
def guarded(fastprof_guard):
    fastprof_guard.detectors[:] = [FakeNPlusOne()]
    yield
    assert fastprof_guard.state is None  # teardown: the guard has ended
"""
    )
    tester.makepyfile(
        test_users="""
        def test_n_plus_one(db):
            for user_id in range(8):
                db.execute("SELECT name FROM users WHERE id = ?", (user_id,)).fetchone()

        def test_clean(db):
            db.execute("SELECT name FROM users").fetchall()
        """
    )
    result = run(tester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*n_plus_one: 8 queries of one shape*"])
