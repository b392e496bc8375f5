"""The hook contract: counted install, singletons, what ``install_hooks`` picks, location."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fastprof._context import current_request
from fastprof.queries import (
    HOOKS,
    caller_location,
    record_connect,
    record_query,
    user_code_frame,
)
from fastprof.queries.base import (
    QueryHook,
    QueryHooks,
    get_hook,
    install_hooks,
    leftovers,
    uninstall_hooks,
)
from fastprof.record import RequestState

THIS = str(Path(__file__))


@contextmanager
def in_request() -> Iterator[RequestState]:
    """What the middleware does around a request: a state in the context variable."""
    state = RequestState("GET", "/test", time.perf_counter())
    token = current_request.set(state)
    try:
        yield state
    finally:
        current_request.reset(token)


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    yield
    assert not leftovers()


class CountingHook(QueryHook):
    name = "counting"
    module = "json"

    def __init__(self) -> None:
        super().__init__()
        self.patched = 0
        self.unpatched = 0

    def _patch(self) -> None:
        self.patched += 1

    def _unpatch(self) -> None:
        self.unpatched += 1


def test_install_is_counted() -> None:
    hook = CountingHook()
    hook.install()
    hook.install()
    assert hook.installed and hook.patched == 1
    hook.uninstall()
    assert hook.installed and hook.unpatched == 0
    hook.uninstall()
    assert not hook.installed and hook.unpatched == 1
    hook.uninstall()  # one too many: ignored
    assert hook.unpatched == 1 and not hook.installed


def test_available_and_imported() -> None:
    assert CountingHook.available() and CountingHook.imported()

    class Missing(CountingHook):
        module = "no_such_driver_fastprof"

    assert not Missing.available() and not Missing.imported()


def test_get_hook_is_a_singleton_per_name() -> None:
    assert get_hook("sqlite3") is get_hook("sqlite3")
    assert get_hook("sqlite3").name == "sqlite3"
    with pytest.raises(ValueError, match="no query hook"):
        get_hook("oracle")


def test_every_registered_hook_loads() -> None:
    for name in HOOKS:
        hook = get_hook(name)
        assert hook.name == name
        assert not hook.installed


def test_install_hooks_picks_imported_drivers_and_undoes_exactly_that() -> None:
    hooks = install_hooks()
    try:
        names = {h.name for h in hooks}
        assert "sqlite3" in names  # imported by this test run
        for hook in hooks:
            assert hook.installed
            assert hook.module in sys.modules
    finally:
        uninstall_hooks(hooks)
    assert all(not h.installed for h in hooks)


def test_query_hooks_start_stop_are_idempotent() -> None:
    holder = QueryHooks(["sqlite3"])
    holder.start()
    holder.start()
    assert get_hook("sqlite3").installed
    holder.stop()
    assert not get_hook("sqlite3").installed
    holder.stop()


def test_record_outside_a_request_is_dropped() -> None:
    assert record_query("SELECT 1", (), 0.001, "test") is None
    assert record_connect("test", 0.001, "connect") is None


def test_record_inside_a_request_points_at_the_caller() -> None:
    with in_request() as state:
        record = record_query("SELECT 1", (), 0.001, "test")  # here: record
        connect = record_connect("test", 0.002, "connect")
    assert state.queries == [record] and state.connects == [connect]
    assert record is not None and record.location is not None
    assert record.location.file == THIS
    assert record.location.function == "test_record_inside_a_request_points_at_the_caller"
    assert record.location.line == line_of("here: record")
    assert connect is not None and connect.how == "connect" and connect.pooled
    assert not connect.kept()


def test_kept_asks_the_record_and_survives_errors() -> None:
    with in_request():
        kept = record_connect("test", 0.0, "connect", still_open=lambda: True)
        closed = record_connect("test", 0.0, "connect", still_open=lambda: False)
        broken = record_connect("test", 0.0, "connect", still_open=lambda: 1 / 0 > 0)
    assert kept is not None and kept.kept()
    assert closed is not None and not closed.kept()
    assert broken is not None and not broken.kept()


def test_user_code_frame_skips_library_frames() -> None:
    import json

    found: list[object] = []

    def default(obj: object) -> str:
        # Called from json's encoder (a library frame) - the innermost user frame is here.
        found.append(caller_location(sys._getframe()))
        return "x"

    json.dumps({"a": object()}, default=default)
    location = found[0]
    assert location is not None
    assert getattr(location, "function", None) == "default"
    assert user_code_frame(None) is None


def test_user_code_frame_follows_a_greenlet_to_its_parent() -> None:
    greenlet = pytest.importorskip("greenlet")
    # SQLAlchemy's asyncio layer runs the sync engine in a greenlet whose stack holds only
    # library frames; the user's await is on the parent's stack, where switch() was called.
    child = greenlet.greenlet(functools.partial(caller_location, None))
    location = child.switch()  # here: switch
    assert location is not None
    assert location.file == THIS
    assert location.function == "test_user_code_frame_follows_a_greenlet_to_its_parent"
    assert location.line == line_of("here: switch")
    # Outside any greenlet there is no parent to look at.
    assert user_code_frame(None) is None


def line_of(marker: str, path: str = THIS) -> int:
    """The line of ``path`` (default: this file) that ends with ``# <marker>``."""
    for number, text in enumerate(Path(path).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)
