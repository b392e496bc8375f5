"""The py-spy backend: an external sampler attached to this whole process.

``start()`` runs ``py-spy record --pid <this process> --format raw --function --threads --idle
--nonblocking --full-filenames`` and waits until py-spy says it is sampling; ``stop()`` interrupts
it (SIGINT, as Control-C would), waits for it to write its collapsed stacks and parses them:
``thread (tid): name;Class.function (file:first line);... count`` becomes one stack per line,
under a synthetic ``<thread name>`` frame, weighing ``count`` sampling intervals.

py-spy reads this process's memory from outside, so the app runs unmodified (no hook, no
tracing) and C extensions, the GIL and idle threads are all visible. The price: a capture sees the
*whole process* - every thread, idle time included - and cannot tell concurrent requests apart;
profile one request at a time with it. It needs permission to read another process's memory
(ptrace): root, ``/proc/sys/kernel/yama/ptrace_scope`` at 0, or a container with
``CAP_SYS_PTRACE``. Starting py-spy takes a few tens of milliseconds, so this backend suits
``profile()`` blocks and deliberately triggered requests, not sampling every request.

py-spy only prints that it is sampling when its output is a terminal (through a pipe the line is
held back until it exits), so it runs on a pseudo-terminal that a reader thread drains.
``--nonblocking`` keeps py-spy from pausing the process at each sample: cheaper for the app, at
the cost of an occasional torn stack.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Collection
from collections.abc import Set as AbstractSet
from pathlib import Path
from types import FrameType
from typing import Any

from fastprof._frames import code_key
from fastprof.backends.base import Backend, BackendUnavailable, Capture, TreeSource
from fastprof.model import CallTree, FrameKey

logger = logging.getLogger("fastprof")

MAX_RATE = 1000
"""Samples per second never exceed this, whatever ``interval`` asks for."""

_MIN_RUN = 0.05  # py-spy installs its Control-C handler just after saying it samples
_STOP_TIMEOUT = 10.0
_PIPE_GRACE = 0.6
_OUTPUT_LIMIT = 16_384
_READY = b"Sampling process"
_READER = "fastprof-pyspy-output"

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>.*):(?P<line>\d+)\)$")
_THREAD = re.compile(r"^thread \((?P<id>[^)]*)\)(?::\s*(?P<name>.*))?$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DENIED = re.compile(
    r"permission denied|operation not permitted|SYS_PTRACE|os error (?:1|13)\b", re.IGNORECASE
)

MISSING = "the py-spy backend needs the py-spy program: pip install 'fastprof-asgi[pyspy]'"
DENIED = (
    "py-spy may not read this process's memory (ptrace was denied). Run as root, or allow "
    "ptrace with `echo 0 | sudo tee /proc/sys/kernel/yama/ptrace_scope`, or give the container "
    "CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE)"
)


def find_pyspy() -> str | None:
    """The py-spy executable: the one installed beside this Python first, then on ``PATH``."""
    beside = Path(sys.executable).parent / ("py-spy.exe" if os.name == "nt" else "py-spy")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


class PySpyBackend(Backend):
    """py-spy sampling the whole process, ``1 / interval`` times a second (at most 1000).

    :param executable: the py-spy program (default: :func:`find_pyspy`).
    :param attach_timeout: seconds to wait for py-spy to start sampling before giving up.
    """

    name = "py-spy"
    whole_process = True

    def __init__(
        self,
        *,
        interval: float = 0.001,
        executable: str | os.PathLike[str] | None = None,
        attach_timeout: float = 10.0,
    ) -> None:
        super().__init__(interval=interval)
        found = os.fspath(executable) if executable is not None else find_pyspy()
        if found is None:
            raise BackendUnavailable(f"{MISSING} (looked beside {sys.executable} and on PATH)")
        self.executable = found
        self.rate = max(1, min(MAX_RATE, round(1 / interval)))
        self.attach_timeout = attach_timeout
        self._live: weakref.WeakSet[_PySpyCapture] = weakref.WeakSet()

    def start(self, anchor: FrameType | None, *, is_async: bool) -> Capture:
        capture = _PySpyCapture(self, anchor)
        self._live.add(capture)
        return capture

    def close(self) -> None:
        """Kill any py-spy this backend still runs."""
        for capture in list(self._live):
            capture.kill()


class _PySpyCapture(Capture):
    def __init__(self, backend: PySpyBackend, anchor: FrameType | None) -> None:
        super().__init__(anchor)
        self.rate = backend.rate
        self._output = bytearray()
        self._ready = threading.Event()
        self._master = -1
        self._tty = True
        self._reader: threading.Thread | None = None
        fd, self.path = tempfile.mkstemp(prefix="fastprof-pyspy-", suffix=".txt")
        os.close(fd)
        began = time.perf_counter()
        try:
            self.proc = self._spawn(backend.executable)
            _running.add(self)
            self._wait_ready(backend.attach_timeout)
        except BaseException:
            self.kill()
            raise
        self.started = time.perf_counter()
        #: Seconds from spawning py-spy to its first sample.
        self.attach_seconds = self.started - began

    def _spawn(self, executable: str) -> subprocess.Popen[bytes]:
        args = [
            executable,
            "record",
            "--pid",
            str(os.getpid()),
            "--format",
            "raw",
            "--output",
            self.path,
            "--rate",
            str(self.rate),
            "--function",
            "--threads",
            "--idle",
            "--nonblocking",
            "--full-filenames",
        ]
        env = {**os.environ, "RUST_BACKTRACE": "0", "NO_COLOR": "1"}
        try:
            import pty

            self._master, terminal = pty.openpty()
        except (ImportError, OSError):  # no pseudo-terminals: the ready line comes at exit
            terminal = subprocess.PIPE
            self._tty = False
        try:
            # A session of its own: Control-C in the server's terminal must not cut py-spy
            # short before it writes its samples.
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=terminal,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendUnavailable(f"{MISSING} (could not run {executable}: {exc})") from exc
        finally:
            if terminal != subprocess.PIPE:
                os.close(terminal)
        if self._master < 0:
            assert proc.stdout is not None
            self._master = os.dup(proc.stdout.fileno())
            proc.stdout.close()
        self._reader = threading.Thread(
            target=self._read, args=(self._master,), name=_READER, daemon=True
        )
        self._reader.start()
        return proc

    def _read(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError as exc:  # EIO: the terminal's other end closed (py-spy exited)
                if exc.errno == errno.EINTR:
                    continue
                break
            if not chunk:
                break
            self._output += chunk
            if _READY in self._output:
                self._ready.set()
            del self._output[:-_OUTPUT_LIMIT]

    def _wait_ready(self, timeout: float) -> None:
        if not self._tty:
            # Without a terminal py-spy says nothing until it exits: give it the time a failed
            # attach takes (its retries last about 0.4 s) and take silence as success.
            timeout = min(timeout, _PIPE_GRACE)
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.005):
            if self.proc.poll() is not None:
                self._drain()
                if self._ready.is_set():  # sampled, then exited at once: stop() will report it
                    return
                raise _failure(self.proc.returncode, self.output())
            if time.monotonic() > deadline:
                if not self._tty:
                    return
                raise BackendUnavailable(
                    f"py-spy did not start sampling within {timeout:g}s; its output: "
                    f"{_tail(self.output()) or '(none)'}"
                )

    def output(self) -> str:
        """What py-spy printed, without colours."""
        return _ANSI.sub("", bytes(self._output).decode("utf-8", "replace")).replace("\r", "")

    def stop(self) -> TreeSource:
        duration = time.perf_counter() - self.started
        error: str | None = None
        raw = b""
        try:
            wait = _MIN_RUN - (time.perf_counter() - self.started)
            if wait > 0:
                time.sleep(wait)
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                error = f"py-spy did not stop within {_STOP_TIMEOUT:g}s and was killed"
            else:
                if self.proc.returncode != 0:
                    self._drain()
                    error = f"py-spy exited with status {self.proc.returncode}: " + _tail(
                        self.output()
                    )
            try:
                raw = Path(self.path).read_bytes()
            except OSError as exc:
                error = error or f"py-spy wrote no samples ({exc.strerror})"
        finally:
            self.kill()
        if error is not None:
            logger.warning("fastprof: %s", error)
        meta: dict[str, Any] = {
            "whole_process": True,
            "rate": self.rate,
            "attach_seconds": self.attach_seconds,
            "pid": os.getpid(),
        }
        if error is not None:
            meta["error"] = error
        interval = 1 / self.rate
        return TreeSource(
            lambda: parse(
                raw, interval=interval, duration=duration, meta=meta, skip_frames=_OWN_FRAMES
            )
        )

    def kill(self) -> None:
        """Make sure py-spy is gone and its files and descriptors are released."""
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait
                logger.warning("fastprof: py-spy (pid %s) ignored SIGKILL", proc.pid)
        self._drain()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        _running.discard(self)

    def _drain(self) -> None:
        # After py-spy exits the reader reaches the end of its output at once.
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(1.0)


def _failure(status: int | None, output: str) -> BackendUnavailable:
    said = _tail(output) or "(no output)"
    if _DENIED.search(output):
        return BackendUnavailable(f"{DENIED}. py-spy said: {said}")
    return BackendUnavailable(f"py-spy could not attach to this process (status {status}): {said}")


def _tail(output: str, lines: int = 6) -> str:
    kept = [line.strip() for line in output.splitlines() if line.strip()]
    return " | ".join(kept[:lines])


def parse(
    raw: bytes | str,
    *,
    interval: float,
    duration: float = 0.0,
    meta: dict[str, Any] | None = None,
    skip_threads: Collection[str] = (_READER,),
    skip_frames: AbstractSet[FrameKey] = frozenset(),
) -> CallTree:
    """A call tree from py-spy's raw (collapsed stack) output; each count weighs ``interval``.

    Stacks of the threads named in ``skip_threads`` (fastprof's own reader) and stacks through
    ``skip_frames`` (a capture waiting for py-spy to start or stop) are left out.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    tree = CallTree(backend="py-spy", duration=duration, interval=interval, meta=dict(meta or {}))
    cache: dict[str, FrameKey] = {}
    threads: dict[str, set[str]] = {}
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        keys: list[FrameKey] = []
        thread = _THREAD.match(frames[0])
        if thread is not None:
            name = thread["name"] or thread["id"]
            if name in skip_threads:
                continue
            threads.setdefault(name, set()).add(thread["id"])
            keys.append((f"<thread {name}>", "", 0))
            frames = frames[1:]
        for frame in frames:
            key = cache.get(frame)
            if key is None:
                key = cache[frame] = _frame_key(frame)
            keys.append(key)
        if skip_frames and not skip_frames.isdisjoint(keys):
            continue
        n = int(count)
        tree.add_stack(keys, n * interval, samples=n)
    tree.meta["threads"] = {name: sorted(ids) for name, ids in sorted(threads.items())}
    return tree


def _frame_key(frame: str) -> FrameKey:
    match = _FRAME.match(frame)
    if match is None:  # a frame py-spy could not place (native code, a process header)
        return (frame, "", 0)
    # py-spy names a frame by its qualified name ("Router.app", "f.<locals>.g"); frame keys
    # use the code's own name, as every other backend does.
    return (match["name"].rpartition(".")[2], match["file"], int(match["line"]))


# py-spy samples the capture itself while it starts and stops: not the app's time.
_OWN_FRAMES = frozenset(
    code_key(method.__code__) for method in (_PySpyCapture.__init__, _PySpyCapture.stop)
)

# Whatever happens to the captures (even one dropped unstopped), no py-spy outlives this
# interpreter: each capture stays here until its py-spy is gone.
_running: set[_PySpyCapture] = set()


@atexit.register
def _kill_all() -> None:
    for capture in list(_running):
        capture.kill()
