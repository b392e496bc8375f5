"""A background writer: a queue drained by a thread that exits when idle.

Serialising and touching the disk must not happen on the event loop; a thread per write would
be wasteful and one that lives forever would outlive the work that needed it. This one starts
on the first item, drains the queue, and exits after ``idle_exit`` seconds with nothing to do.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger("fastprof")

T = TypeVar("T")


class BackgroundWriter(Generic[T]):
    def __init__(
        self,
        write: Callable[[T], object],
        *,
        name: str,
        max_queue: int = 1000,
        idle_exit: float = 1.0,
    ) -> None:
        self._write = write
        self._name = name
        self.dropped = 0
        self._queue: queue.Queue[T] = queue.Queue(maxsize=max_queue)
        self._idle_exit = idle_exit
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def submit(self, item: T) -> None:
        """Queue ``item``; never blocks (a full queue drops the item and counts it)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) until everything queued so far is written."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def join(self, timeout: float = 5.0) -> None:
        """Wait until the writer thread has exited (it does after ``idle_exit`` idle)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_exit)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                self._write(item)
            except Exception:
                logger.exception("fastprof: %s could not write an item", self._name)
            finally:
                self._queue.task_done()
