"""event_loop_blocking: async endpoints that block the loop, and the same work done right.

Positives wait (``time.sleep``, a blocking HTTP call and a raw socket read against a slow local
server, ``subprocess.run``, opening a FIFO nobody writes to yet) or compute (a Python loop,
reads of ``/dev/zero`` - kernel time on the loop thread -, PBKDF2, a SQLite query). A C call
that holds the GIL (``json.dumps``, a backtracking ``re``) is caught about 29 times in 30 - the
watchdog only gets in after it - so it is tested in tests/detectors, not scored here.
Negatives do the same work in ``def`` endpoints, the threadpool or ``asyncio.to_thread``, with
async libraries, in short slices that yield in between, or are garbage-collection pauses (not
the request's code).

Every positive blocks for about 0.3 s (CPU work is calibrated at build time), well past the
default 100 ms threshold, so a noisy machine only makes the stalls longer.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from tests.corpus import Case

BLOCK = 0.3

BLOCKING = frozenset({"event_loop_blocking"})

CASES = [
    Case("/sleep", BLOCKING, blocking="wait"),
    Case("/urlopen", BLOCKING, blocking="wait"),
    Case("/socket", BLOCKING, blocking="wait"),
    Case("/subprocess", BLOCKING, blocking="wait"),
    Case("/fifo", BLOCKING, blocking="wait"),
    Case("/cpu", BLOCKING, blocking="cpu"),
    Case("/devzero", BLOCKING, blocking="cpu"),
    Case("/pbkdf2", BLOCKING, blocking="cpu"),
    Case("/sqlite", BLOCKING, blocking="cpu"),
    Case("/def-sleep"),
    Case("/def-cpu"),
    Case("/def-urlopen"),
    Case("/threadpool-sleep"),
    Case("/to-thread-subprocess"),
    Case("/to-thread-pbkdf2"),
    Case("/async-sleep"),
    Case("/async-http"),
    Case("/async-subprocess"),
    Case("/short-blocks"),
    Case("/gc"),
    Case("/fast"),
]


class _SlowUpstream:
    """A slow HTTP upstream on 127.0.0.1: answers each request after BLOCK seconds.

    One thread blocked in ``accept()``, serving connections one at a time: nothing in it wakes
    up on its own, so it never competes for the GIL with the loop and the watchdog (a polling
    server thread would, and could take the GIL the watchdog waits for).
    """

    BODY = b'{"slow": true}'

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name="corpus-slow-upstream")
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    conn.recv(65536)
                    time.sleep(BLOCK)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(self.BODY)
                        + self.BODY
                    )
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()
        self.thread.join(5)


def _per_second(work: Any, amount: int) -> float:
    """How much of ``work`` runs in a second at best (sized so that a run takes 50 ms).

    The best of three runs: sized on it, the work takes at least that long on a quiet machine.
    """
    while True:
        started = time.perf_counter()
        work(amount)
        took = time.perf_counter() - started
        if took >= 0.05:
            break
        amount *= 2
    for _ in range(2):
        started = time.perf_counter()
        work(amount)
        took = min(took, time.perf_counter() - started)
    return amount / took


def build() -> FastAPI:
    # CPU work sized for about BLOCK seconds on this machine (noise only makes it longer).
    squares = int(BLOCK * _per_second(lambda n: sum(i * i % 7 for i in range(n)), 100_000))
    rounds = int(BLOCK * _per_second(lambda n: hashlib.pbkdf2_hmac("sha256", b"", b"", n), 20_000))
    count_query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
    count_query += "SELECT count(*) FROM c"
    # One connection for the app (a connection per request is another detector's finding).
    db = sqlite3.connect(":memory:", check_same_thread=False)
    rows = int(BLOCK * _per_second(lambda n: db.execute(count_query, (n,)).fetchone(), 100_000))
    heap: list[list[int]] = []
    server: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstream = _SlowUpstream()
        folder = tempfile.mkdtemp(prefix="fastprof-fifo-")
        fifo = os.path.join(folder, "fifo")
        os.mkfifo(fifo)
        server.update(port=upstream.port, fifo=fifo)
        # One client for the app: building one per request costs an SSL context (~40 ms).
        server["client"] = httpx.AsyncClient(timeout=5)
        # Tracked objects make a full collection slow: a GC pause the app did not cause.
        heap.extend([i] for i in range(500_000))
        try:
            yield
        finally:
            await server["client"].aclose()
            db.close()
            heap.clear()
            upstream.close()
            os.unlink(fifo)
            os.rmdir(folder)

    app = FastAPI(lifespan=lifespan)

    def upstream_url() -> str:
        return f"http://127.0.0.1:{server['port']}/slow"

    @app.get("/sleep")
    async def sleep() -> dict[str, bool]:
        time.sleep(BLOCK)  # expect: event_loop_blocking
        return {"slept": True}

    @app.get("/urlopen")
    async def urlopen() -> dict[str, int]:
        url = upstream_url()
        with urllib.request.urlopen(url, timeout=5) as reply:  # expect: event_loop_blocking
            body = reply.read()
        return {"bytes": len(body)}

    @app.get("/socket")
    async def raw_socket() -> dict[str, int]:
        with socket.create_connection(("127.0.0.1", server["port"]), timeout=5) as conn:
            conn.sendall(b"GET /slow HTTP/1.0\r\nHost: upstream\r\n\r\n")
            head = conn.recv(4096)  # expect: event_loop_blocking
        return {"bytes": len(head)}

    @app.get("/subprocess")
    async def run_subprocess() -> dict[str, int]:
        done = subprocess.run(["sleep", str(BLOCK)], check=True)  # expect: event_loop_blocking
        return {"code": done.returncode}

    @app.get("/fifo")
    async def fifo_read() -> dict[str, int]:
        def write_later() -> None:
            time.sleep(BLOCK)
            with open(server["fifo"], "wb") as out:
                out.write(b"written")

        writer = threading.Thread(target=write_later, name="corpus-fifo-writer")
        writer.start()
        with open(server["fifo"], "rb") as pipe:  # expect: event_loop_blocking
            data = pipe.read()
        writer.join()
        return {"bytes": len(data)}

    @app.get("/cpu")
    async def cpu() -> dict[str, int]:
        total = sum(i * i % 7 for i in range(squares))  # expect: event_loop_blocking
        return {"total": total}

    @app.get("/devzero")
    async def devzero() -> dict[str, int]:
        fd = os.open("/dev/zero", os.O_RDONLY)
        read = 0
        try:
            # BLOCK seconds of the thread's CPU time (kernel time counts): more on a busy machine
            deadline = time.thread_time() + BLOCK
            while time.thread_time() < deadline:  # expect: event_loop_blocking
                read += len(os.read(fd, 1 << 16))  # expect: event_loop_blocking
        finally:
            os.close(fd)
        return {"bytes": read}

    @app.get("/pbkdf2")
    async def pbkdf2() -> dict[str, str]:
        key = hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", rounds)  # expect: event_loop_blocking
        return {"key": key.hex()[:8]}

    @app.get("/sqlite")
    async def sqlite() -> dict[str, int]:
        found = db.execute(count_query, (rows,)).fetchone()  # expect: event_loop_blocking
        return {"count": found[0]}

    # -- the same work, done without blocking the loop ------------------------------------
    @app.get("/def-sleep")
    def def_sleep() -> dict[str, bool]:
        time.sleep(BLOCK)
        return {"slept": True}

    @app.get("/def-cpu")
    def def_cpu() -> dict[str, int]:
        return {"total": sum(i * i % 7 for i in range(squares))}

    @app.get("/def-urlopen")
    def def_urlopen() -> dict[str, int]:
        with urllib.request.urlopen(upstream_url(), timeout=5) as reply:
            return {"bytes": len(reply.read())}

    @app.get("/threadpool-sleep")
    async def threadpool_sleep() -> dict[str, bool]:
        await run_in_threadpool(time.sleep, BLOCK)
        return {"slept": True}

    @app.get("/to-thread-subprocess")
    async def to_thread_subprocess() -> dict[str, int]:
        done = await asyncio.to_thread(subprocess.run, ["sleep", str(BLOCK)], check=True)
        return {"code": done.returncode}

    @app.get("/to-thread-pbkdf2")
    async def to_thread_pbkdf2() -> dict[str, str]:
        key = await asyncio.to_thread(hashlib.pbkdf2_hmac, "sha256", b"password", b"salt", rounds)
        return {"key": key.hex()[:8]}

    @app.get("/async-sleep")
    async def async_sleep() -> dict[str, bool]:
        await asyncio.sleep(BLOCK)
        return {"slept": True}

    @app.get("/async-http")
    async def async_http() -> dict[str, int]:
        reply = await server["client"].get(upstream_url())
        return {"bytes": len(reply.content)}

    @app.get("/async-subprocess")
    async def async_subprocess() -> dict[str, int]:
        child = await asyncio.create_subprocess_exec("sleep", str(BLOCK))
        return {"code": await child.wait()}

    @app.get("/short-blocks")
    async def short_blocks() -> dict[str, int]:
        # 0.3 s of blocking in all, but never more than 30 ms at a time.
        for _ in range(10):
            time.sleep(0.03)
            await asyncio.sleep(0)
        return {"slices": 10}

    @app.get("/gc")
    async def collect() -> dict[str, int]:
        deadline = time.perf_counter() + BLOCK
        passes = 0
        while time.perf_counter() < deadline:
            gc.collect()
            passes += 1
        return {"passes": passes}

    @app.get("/fast")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    return app
