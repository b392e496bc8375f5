"""The py-spy backend: a real py-spy attached to the test process, and its failure modes."""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import fastprof.backends.pyspy as pyspy
from fastprof import _threadpool
from fastprof._context import current_capture
from fastprof.backends import BackendUnavailable, TreeSource, backend_class
from fastprof.backends.pyspy import PySpyBackend, parse

# py-spy's own words when ptrace is refused (src/main.rs, non-root case).
PERMISSION_DENIED = (
    "Permission Denied: Try running again with elevated permissions by going "
    "'sudo env \"PATH=$PATH\" !!'"
)


def spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def children() -> set[int]:
    """Processes whose parent is this one (zombies included)."""
    mine = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(text.rpartition(")")[2].split()[1]) == mine:
                found.add(int(entry))
    return found


def fake_pyspy(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "py-spy"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(scope="module")
def attachable() -> None:
    """Skip what needs a real attach when py-spy is missing or may not ptrace us."""
    if pyspy.find_pyspy() is None:
        pytest.skip("py-spy is not installed (pip install 'fastprof-asgi[pyspy]')")
    try:
        PySpyBackend().start(None, is_async=False).stop()
    except BackendUnavailable as exc:
        pytest.skip(f"py-spy cannot attach to this process here: {exc}")


@pytest.fixture
def no_new_children() -> Iterator[None]:
    if not os.path.isdir("/proc"):
        yield
        return
    before = children()
    yield
    assert children() <= before, "a py-spy process outlived its capture"


pytestmark = pytest.mark.usefixtures("no_new_children")


# -- a real py-spy ------------------------------------------------------------------------


def test_registered_under_its_name() -> None:
    assert backend_class("py-spy") is PySpyBackend
    assert PySpyBackend.whole_process


@pytest.mark.usefixtures("attachable")
def test_a_cpu_loop_shows_in_the_whole_process_tree() -> None:
    backend = PySpyBackend(interval=0.002)
    capture = backend.start(sys._getframe(), is_async=False)
    spin(1.0)
    tree = capture.stop().get()

    assert tree.backend == "py-spy"
    assert tree.interval == pytest.approx(0.002)
    assert tree.meta["whole_process"] is True
    assert 0 < tree.meta["attach_seconds"] < 10
    assert "error" not in tree.meta
    # whole process: under a synthetic frame per thread, from the thread's very first frame
    main = tree.root.children[("<thread MainThread>", "", 0)]
    [node] = tree.find("spin")
    assert node.file == __file__
    assert node.line == spin.__code__.co_firstlineno
    assert node.samples >= 100  # ~500 expected; py-spy may skip some without pausing us
    assert 0.2 <= node.total <= 1.5
    assert main.total >= node.total
    # fastprof's own machinery is not part of the picture: its reader thread, the capture
    # waiting for py-spy to stop
    assert not any("fastprof-pyspy" in name for name in tree.meta["threads"])
    assert not any(node.file == pyspy.__file__ for _, node in tree.walk())


@pytest.mark.usefixtures("attachable")
def test_stop_leaves_no_process_and_no_file() -> None:
    capture: Any = PySpyBackend().start(None, is_async=False)
    proc, path = capture.proc, capture.path
    assert proc.poll() is None
    capture.stop()
    assert proc.poll() is not None
    assert not os.path.exists(path)


@pytest.mark.usefixtures("attachable")
def test_close_kills_captures_never_stopped() -> None:
    backend = PySpyBackend()
    capture: Any = backend.start(None, is_async=False)
    backend.close()
    assert capture.proc.poll() is not None


class Captured:
    """A minimal profiling middleware: a capture around each request, as fastprof's does."""

    def __init__(self, app: Any, backend: PySpyBackend) -> None:
        self.app = app
        self.backend = backend
        self.sources: list[TreeSource] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        capture = self.backend.start(sys._getframe(), is_async=True)
        token = current_capture.set(capture)
        _threadpool.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            source = capture.stop()
            _threadpool.release()
            current_capture.reset(token)
            self.sources.append(source)


@pytest.mark.usefixtures("attachable")
async def test_around_a_request() -> None:
    async def busy_endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(spin(0.3)))

    app = Captured(Starlette(routes=[Route("/busy", busy_endpoint)]), PySpyBackend())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/busy")
    assert response.status_code == 200

    [source] = app.sources
    tree = source.get()
    assert {"busy_endpoint", "spin"} <= tree.functions()
    # the whole process, so the frames above the middleware are there too
    assert "test_around_a_request" in tree.functions()
    assert tree.duration >= 0.3


# -- failures -------------------------------------------------------------------------------


def test_missing_program_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyspy, "find_pyspy", lambda: None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'fastprof-asgi\[pyspy\]'"):
        PySpyBackend()


def test_program_that_cannot_run(tmp_path: Path) -> None:
    backend = PySpyBackend(executable=tmp_path / "missing" / "py-spy")
    with pytest.raises(BackendUnavailable, match=r"fastprof-asgi\[pyspy\].*could not run"):
        backend.start(None, is_async=False)


def test_permission_denied_says_how_to_allow_ptrace(tmp_path: Path) -> None:
    exe = fake_pyspy(tmp_path, f"echo '{PERMISSION_DENIED}' >&2\nexit 1\n")
    backend = PySpyBackend(executable=exe)
    with pytest.raises(BackendUnavailable) as caught:
        backend.start(None, is_async=False)
    message = str(caught.value)
    assert "run as root" in message.lower()
    assert "/proc/sys/kernel/yama/ptrace_scope" in message
    assert "CAP_SYS_PTRACE" in message
    assert "Permission Denied" in message  # py-spy's own words are kept
    assert not list(tmp_path.glob("fastprof-pyspy-*"))


def test_other_failures_show_what_pyspy_said(tmp_path: Path) -> None:
    exe = fake_pyspy(tmp_path, "echo 'Error: Failed to find python version' >&2\nexit 1\n")
    with pytest.raises(BackendUnavailable, match=r"status 1.*Failed to find python version"):
        PySpyBackend(executable=exe).start(None, is_async=False)


def test_a_silent_pyspy_is_killed_after_the_attach_timeout(tmp_path: Path) -> None:
    exe = fake_pyspy(tmp_path, "exec sleep 30\n")
    backend = PySpyBackend(executable=exe, attach_timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(BackendUnavailable, match=r"did not start sampling within 0.3s"):
        backend.start(None, is_async=False)
    assert time.perf_counter() - started < 5


def test_interrupted_pyspy_without_samples_gives_an_empty_tree(tmp_path: Path) -> None:
    # Says it samples, then dies on SIGINT without writing anything.
    exe = fake_pyspy(
        tmp_path, "echo 'py-spy> Sampling process 1000 times a second.'\nexec sleep 30\n"
    )
    capture = PySpyBackend(executable=exe).start(None, is_async=False)
    tree = capture.stop().get()
    assert tree.total == 0
    assert "py-spy exited with status" in tree.meta["error"]


# -- the raw format -------------------------------------------------------------------------


def test_parse_collapsed_stacks() -> None:
    raw = (
        "thread (101): MainThread;<module> (/app/main.py:1);"
        "Views.handler (/app/my app (v2)/views.py:10) 30\n"
        "thread (101): MainThread;<module> (/app/main.py:1) 10\n"
        "thread (202): AnyIO worker thread;Thread.run (/usr/lib/python3.11/threading.py:975) 5\n"
        "thread (303): fastprof-pyspy-output;_read (/x/pyspy.py:1) 7\n"
        "thread (404);<unknown> 2\n"
        "thread (101): MainThread;make.<locals>.<lambda> (/app/main.py:7) 1\n"
        "garbage\n"
    )
    tree = parse(raw, interval=0.01, duration=0.5)

    main = tree.root.children[("<thread MainThread>", "", 0)]
    module = main.children[("<module>", "/app/main.py", 1)]
    handler = module.children[("handler", "/app/my app (v2)/views.py", 10)]
    assert handler.total == pytest.approx(0.3) and handler.samples == 30
    assert module.self_time == pytest.approx(0.1)
    assert tree.find("run")[0].total == pytest.approx(0.05)
    assert tree.root.children[("<thread 404>", "", 0)].children[("<unknown>", "", 0)].samples == 2
    assert main.children[("<lambda>", "/app/main.py", 7)].samples == 1
    assert tree.total == pytest.approx(0.48)  # the reader thread's 7 samples are left out
    assert tree.meta["threads"] == {
        "404": ["404"],
        "AnyIO worker thread": ["202"],
        "MainThread": ["101"],
    }


def test_parse_leaves_out_stacks_through_given_frames() -> None:
    raw = (
        "thread (1): MainThread;main (/app/main.py:1);work (/app/main.py:5) 3\n"
        "thread (1): MainThread;main (/app/main.py:1);_PySpyCapture.stop (/fp/pyspy.py:9) 4\n"
    )
    tree = parse(raw, interval=1.0, skip_frames=frozenset({("stop", "/fp/pyspy.py", 9)}))
    assert tree.total == 3
    assert "stop" not in tree.functions()
