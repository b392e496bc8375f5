"""Shared fixtures: tiny apps are built inside the tests; this file checks nothing leaks."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import pytest
from pyinstrument.stack_sampler import active_profiler_context_var

from fastprof import _threadpool

REQUIRE_SERVICES = os.environ.get("FASTPROF_REQUIRE_SERVICES") == "1"


def _fastprof_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fastprof-")]


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Like pyinstrument's check_sampler_state: no hook, patch or thread survives a test."""
    assert sys.getprofile() is None
    assert not _threadpool.installed()
    yield
    import fastprof.backends.continuous as continuous

    if continuous.Sampler._shared is not None:
        continuous.Sampler._shared.stop()
    leftovers = []
    if sys.getprofile() is not None:
        leftovers.append(f"profile hook {sys.getprofile()!r}")
    if _threadpool.installed():
        leftovers.append("threadpool hook still installed")
    if active_profiler_context_var.get() is not None:
        leftovers.append("pyinstrument context var still set")
    if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        leftovers.append(f"SIGALRM handler left installed: {signal.getsignal(signal.SIGALRM)!r}")
    if signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
        leftovers.append("ITIMER_REAL left armed")
    if "yappi" in sys.modules and sys.modules["yappi"].is_running():
        leftovers.append("yappi still running")
    from fastprof._context import current_request
    from fastprof.detectors import slow_serialization
    from fastprof.guard import running

    if slow_serialization.HOOKS.installed:
        leftovers.append("slow_serialization hooks still installed (json.dumps, render)")
    if running():
        leftovers.append(f"guard() blocks still running: {running()}")
    if current_request.get() is not None:
        leftovers.append("fastprof._context.current_request left set")
    from fastprof.queries.base import leftovers as query_hook_leftovers

    leftovers.extend(query_hook_leftovers())
    import gc

    from fastprof.detectors._watchdog import Watchdog

    if any(isinstance(getattr(cb, "__self__", None), Watchdog) for cb in gc.callbacks):
        leftovers.append("event_loop_blocking watchdog gc callback left installed")
    from fastprof import _pauses

    if _pauses.installed():
        leftovers.append("gc pause recorder (fastprof._pauses) left installed")
    from fastprof.queries import explain, pools

    if explain.over != float("inf") or pools.watching:
        leftovers.append("slow_query EXPLAIN or pool_exhaustion waits still watched")
    threads = _fastprof_threads()
    for name in threads:
        for t in threading.enumerate():
            if t.name == name:
                t.join(3)
    threads = _fastprof_threads()
    if threads:
        leftovers.append(f"threads left running: {threads}")
    assert not leftovers, "; ".join(leftovers)


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under FASTPROF_REQUIRE_SERVICES=1 as in CI, fail) when a service is absent."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}, and FASTPROF_REQUIRE_SERVICES=1 makes it mandatory")
    pytest.skip(f"{message}; start it (or set FASTPROF_REQUIRE_SERVICES=1 to make this fail)")
