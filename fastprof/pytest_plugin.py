"""pytest plugin: fail a test whose code runs an N+1 query loop or blocks the event loop.

Registered through the ``pytest11`` entry point, so installing fastprof-asgi is enough; it does
nothing to a test unless asked, in one of three ways (see docs/testing.md):

* ``@pytest.mark.fastprof`` on a test (or module/class), optionally
  ``@pytest.mark.fastprof(fail_on=["n_plus_one"], threshold_ms=50, detect=[...], options={...})``;
* the ``fastprof_guard`` fixture (the :class:`~fastprof.guard.guard` around the test;
  its ``findings`` are filled in when the test body has run);
* ``pytest --fastprof``: every test, with the defaults.

The test body runs inside :func:`fastprof.guard.guard` - for ``async def`` tests inside the
test's own event loop - and fails with the findings' evidence in the message.
``@pytest.mark.fastprof(fail_on=[])`` exempts a test from ``--fastprof``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator
from typing import Any

import pytest

from fastprof.guard import FastprofAssertion, describe, guard

#: What a guarded test fails on unless its marker says otherwise.
DEFAULT_FAIL_ON: tuple[str, ...] = ("n_plus_one", "event_loop_blocking")

_MARKER = (
    "fastprof(fail_on=[kinds], detect=[detectors], threshold_ms=None, options={}): run "
    "fastprof's detectors around the test and fail it on findings of the kinds in fail_on "
    f"(default {', '.join(DEFAULT_FAIL_ON)})"
)
_KEYWORDS = frozenset({"fail_on", "detect", "threshold_ms", "options"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastprof", "fastprof: detect N+1 queries and event loop blocking")
    group.addoption(
        "--fastprof",
        action="store_true",
        default=False,
        help="guard every test: fail it on an N+1 query loop or event loop blocking",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)


def make_guard(item: pytest.Item, *, always: bool = False) -> guard | None:
    """The guard for ``item`` as its marker and the command line ask (None: not guarded)."""
    marker = item.get_closest_marker("fastprof")
    if marker is None and not always and not item.config.getoption("fastprof"):
        return None
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.fastprof takes keyword arguments only "
            f"({', '.join(sorted(_KEYWORDS))})"
        )
    unknown = set(kwargs) - _KEYWORDS
    if unknown:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.fastprof got unknown argument(s) "
            f"{', '.join(sorted(unknown))}; it takes {', '.join(sorted(_KEYWORDS))}"
        )
    return guard(
        kwargs.get("detect"),
        fail_on=kwargs.get("fail_on", DEFAULT_FAIL_ON),
        detector_options=kwargs.get("options"),
        threshold_ms=kwargs.get("threshold_ms"),
        label=item.nodeid,
    )


@pytest.fixture
def fastprof_guard(request: pytest.FixtureRequest) -> guard:
    """The guard around this test's body (configured by a ``fastprof`` marker, if any)."""
    made = make_guard(request.node, always=True)
    assert made is not None
    return made


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    __tracebackhide__ = True
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    active = funcargs.get("fastprof_guard")
    if not isinstance(active, guard):
        active = make_guard(item)
    if active is None:
        return (yield)
    failed_by_guard = False
    try:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            # Enter the guard inside the test's own event loop, as the test's first await.
            function = item.obj
            item.obj = _guarded(function, active)
            try:
                return (yield)
            finally:
                item.obj = function
        with active:
            return (yield)
    except FastprofAssertion:
        failed_by_guard = True
        raise
    finally:
        if active.findings and not failed_by_guard:  # else the failure message has them
            item.add_report_section("call", "fastprof", describe(active.findings))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # The guard's traceback is fastprof's and pytest's own frames: its message says it all.
    excinfo = call.excinfo
    if call.when == "call" and excinfo is not None and isinstance(excinfo.value, FastprofAssertion):
        report.longrepr = f"{excinfo.typename}: {excinfo.value}"
    return report


def _guarded(function: Callable[..., Any], active: guard) -> Callable[..., Any]:
    @functools.wraps(function)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        async with active:
            return await function(*args, **kwargs)

    return guarded
