"""The server side of a scan: the user's app, wrapped, under uvicorn in a child process.

``python -m fastprof.scan.child`` reads its settings from the ``FASTPROF_SCAN`` environment
variable (JSON), loads the app (exiting with status 3 and one ``FASTPROF-ERROR <message>`` line
on stderr if it cannot), wraps it in :class:`~fastprof.FastprofMiddleware` with every detector,
timing and the continuous sampler, and serves it. At shutdown each worker process writes what
it saw to ``<out>/worker-<pid>.json`` (:class:`WorkerResult`); the parent merges them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TypedDict

import orjson
from starlette.types import Message, Receive, Scope, Send

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


def build_app() -> ScanApp:
    """The uvicorn factory: the user's app, wrapped."""
    config = settings()
    app = load_app(config["app"], factory=config["factory"], app_dir=config["app_dir"])
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
    return ScanApp(middleware, collector, config["out"])


def main() -> None:
    import uvicorn

    config = settings()
    try:
        app: Any = build_app()
    except AppLoadError as exc:
        print(ERROR_MARK + str(exc), file=sys.stderr, flush=True)
        raise SystemExit(EXIT_LOAD) from None
    workers = int(config.get("workers", 1))
    if workers > 1:
        app = "fastprof.scan.child:build_app"
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
