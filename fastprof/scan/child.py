"""The server side of a scan: the user's app, wrapped, under uvicorn in a child process.

``python -m fastprof.scan.child`` reads its settings from the ``FASTPROF_SCAN`` environment
variable (JSON), loads the app (exiting with status 3 and one ``FASTPROF-ERROR <message>`` line
on stderr if it cannot), wraps it in :class:`~fastprof.FastprofMiddleware` with every detector,
timing and the continuous sampler, and serves it. At shutdown each worker process writes what
it saw to ``<out>/worker-<pid>.json`` (:class:`WorkerResult`); the parent merges them.

Settings besides the app's: ``workers``; ``profile`` (default true; false serves the app as it
is, with no middleware and no results file: what a tuning sweep measures); ``threads`` (the
size of AnyIO's default thread limiter, which runs ``def`` endpoints and sync dependencies;
unset keeps AnyIO's 40).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TypedDict

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastprof.findings import FindingDict
from fastprof.load.histogram import Histogram, HistogramDict
from fastprof.middleware import FastprofMiddleware
from fastprof.model import CallTreeDict
from fastprof.record import RequestRecord
from fastprof.scan.app_loader import AppLoadError, load_app

ENV = "FASTPROF_SCAN"
ERROR_MARK = "FASTPROF-ERROR "
EXIT_LOAD = 3


class RouteCounters(TypedDict):
    requests: int
    errors: int
    queries: int
    blocked: float
    server_time: float
    #: server-side duration of each request (what replay reports per route)
    latency: HistogramDict


class CountedFinding(TypedDict):
    finding: FindingDict
    count: int


class WorkerResult(TypedDict):
    pid: int
    routes: dict[str, RouteCounters]
    trees: dict[str, CallTreeDict]
    findings: list[CountedFinding]


class Collector:
    """Per-route counters from every request's timing record."""

    def __init__(self) -> None:
        self.routes: dict[str, list[float]] = {}
        self.latency: dict[str, Histogram] = {}

    def __call__(self, record: RequestRecord) -> None:
        counters = self.routes.get(record.key)
        if counters is None:
            counters = self.routes[record.key] = [0, 0, 0, 0.0, 0.0]
            self.latency[record.key] = Histogram()
        counters[0] += 1
        counters[1] += record.status >= 500
        counters[2] += record.queries
        counters[3] += record.blocked
        counters[4] += record.duration
        self.latency[record.key].record(record.duration)

    def counters(self) -> dict[str, RouteCounters]:
        return {
            key: {
                "requests": int(c[0]),
                "errors": int(c[1]),
                "queries": int(c[2]),
                "blocked": c[3],
                "server_time": c[4],
                "latency": self.latency[key].to_dict(),
            }
            for key, c in self.routes.items()
        }


class ScanApp:
    """The wrapped app; writes this worker's results when the server shuts down."""

    def __init__(self, middleware: FastprofMiddleware, collector: Collector, out: str) -> None:
        self.middleware = middleware
        self.collector = collector
        self.out = out
        self.dumped = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.middleware(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen: list[str] = []
        answered: list[str] = []

        async def receiving() -> Message:
            message = await receive()
            seen.append(message["type"])
            return message

        async def sending(message: Message) -> None:
            answered.append(message["type"])
            if message["type"] == "lifespan.shutdown.complete":
                self.dump()
            await send(message)

        try:
            await self.middleware(scope, receiving, sending)
        except Exception:
            if "lifespan.startup.complete" in answered:
                raise
            # The app does not speak lifespan: answer for it, and dump at shutdown.
            if "lifespan.startup" not in seen:
                await receive()
            await send({"type": "lifespan.startup.complete"})
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            self.dump()
            await send({"type": "lifespan.shutdown.complete"})
        if not self.dumped:
            self.dump()

    def dump(self) -> None:
        if self.dumped:
            return
        self.dumped = True
        mw = self.middleware
        mw.close()
        result: WorkerResult = {
            "pid": os.getpid(),
            "routes": self.collector.counters(),
            "trees": {key: tree.to_dict() for key, tree in mw.route_trees.items()},
            "findings": [
                {"finding": finding.to_dict(), "count": count}
                for finding, count in mw.store.finding_summary.values()
            ],
        }
        path = os.path.join(self.out, f"worker-{os.getpid()}.json")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(result))
        os.replace(tmp, path)


def settings() -> dict[str, Any]:
    raw = os.environ.get(ENV)
    if not raw:
        raise SystemExit(f"{ENV} is not set: this module is started by `fastprof scan`")
    data: dict[str, Any] = json.loads(raw)
    return data


class ThreadLimit:
    """Sets the size of AnyIO's default thread limiter before the app sees its first event.

    The limiter belongs to the event loop (an AnyIO ``RunVar``), so it can only be sized from
    inside the server's loop: here, on the first call (the lifespan startup, or the first
    request when the server runs without lifespan).
    """

    def __init__(self, app: ASGIApp, tokens: int) -> None:
        self.app = app
        self.tokens = tokens
        self.done = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.done:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = self.tokens
            self.done = True
        await self.app(scope, receive, send)


class ReadyMark:
    """Writes ``<out>/ready-<pid>`` once this worker's app has started (lifespan startup done).

    With several workers the parent's socket accepts connections before every worker has
    loaded the app; the parent waits for one mark per worker before it sends measured load.
    An app without lifespan support is marked when it fails the lifespan scope (uvicorn then
    serves it anyway); an app whose startup failed is not.
    """

    def __init__(self, app: ASGIApp, out: str) -> None:
        self.app = app
        self.out = out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        sent: list[str] = []

        async def sending(message: Message) -> None:
            sent.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                self.mark()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            if "lifespan.startup.failed" not in sent:  # no lifespan support: serving anyway
                self.mark()
            raise

    def mark(self) -> None:
        path = os.path.join(self.out, f"ready-{os.getpid()}")
        try:
            with open(path, "xb"):
                pass
        except OSError:  # marked already (or the parent is gone)
            pass


def ready_count(out: str) -> int:
    """How many worker processes have marked themselves ready in ``out``."""
    try:
        return sum(name.startswith("ready-") for name in os.listdir(out))
    except OSError:
        return 0


def serve_app() -> ASGIApp:
    """The uvicorn factory: :func:`build_app` behind the ready mark."""
    return ReadyMark(build_app(), settings()["out"])


def build_app() -> ASGIApp:
    """The uvicorn factory: the user's app, wrapped (or bare, with ``profile`` false)."""
    config = settings()
    app = load_app(config["app"], factory=config["factory"], app_dir=config["app_dir"])
    threads = config.get("threads")
    if not config.get("profile", True):
        return ThreadLimit(app, int(threads)) if threads else app
    collector = Collector()
    middleware = FastprofMiddleware(
        app,
        backend="continuous",
        continuous_interval=config.get("interval", 0.005),
        timing=True,
        detect=config.get("detect", True),
        on_request=collector,
        slow_ms=None,
        max_profiles=10,
    )
    scan_app = ScanApp(middleware, collector, config["out"])
    return ThreadLimit(scan_app, int(threads)) if threads else scan_app


def main() -> None:
    import uvicorn

    config = settings()
    try:
        app: Any = serve_app()
    except AppLoadError as exc:
        print(ERROR_MARK + str(exc), file=sys.stderr, flush=True)
        raise SystemExit(EXIT_LOAD) from None
    workers = int(config.get("workers", 1))
    if workers > 1:
        app = "fastprof.scan.child:serve_app"
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(config["port"]),
        workers=workers if workers > 1 else None,
        factory=workers > 1,
        log_level=config.get("log_level", "warning"),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
