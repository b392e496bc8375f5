"""The whole scan: start the app, find its routes, load each one, stop, collect, summarise.

:func:`run_scan` raises :class:`ScanError` (a one-line message and an exit code) for anything
the user can fix; a route that times out or fails is recorded and the scan goes on.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

import orjson

from fastprof.load.client import LoadResult, run_load
from fastprof.load.histogram import Histogram
from fastprof.load.replay import ReplayEntry, load_har, load_jsonl, replay
from fastprof.scan import child
from fastprof.scan.discover import Discovery, Target, discover
from fastprof.scan.results import (
    SCHEMA,
    RouteResult,
    ScanFinding,
    ScanResult,
    ServerCounters,
    merge_workers,
)
from fastprof.scan.scenario import Scenario, ScenarioError, load_scenario
from fastprof.scan.server_check import check_server
from fastprof.scan.sweep import Setting, Sweep, SweepError, SweepResult, parse_sweeps, run_sweep

# Exit codes of `fastprof scan` (docs/cli.md)
EXIT_OK = 0
EXIT_FINDINGS = 1  # --fail-on, --budget or --fail-on-regression tripped
EXIT_USAGE = 2  # bad option or input file (scenario, replay, budget)
EXIT_APP_LOAD = 3  # module not found, attribute missing, not an ASGI app, import failed
EXIT_APP_CRASH = 4  # the app exited or never answered during startup
EXIT_PORT = 5  # the requested port is in use
EXIT_INTERRUPTED = 130


class ScanError(Exception):
    def __init__(self, message: str, exit_code: int, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        #: extra lines worth showing (e.g. the app's last log lines)
        self.details = details or []


@dataclass
class ScanSettings:
    app: str | None = None
    url: str | None = None
    factory: bool = False
    workers: int = 1
    port: int | None = None
    duration: float = 1.0
    concurrency: int = 8
    rate: float | None = None
    warmup: float = 0.25
    timeout: float = 5.0
    scenarios: list[str] = field(default_factory=list)
    replay: str | None = None
    replay_pace: Literal["original", "fast"] = "fast"
    out: str = "fastprof-report"
    openapi_url: str = "/openapi.json"
    startup_timeout: float = 30.0
    interval: float = 0.005
    #: detector names to run (None: all of them)
    detect: list[str] | None = None
    #: size of AnyIO's thread limiter in the app (None: AnyIO's default, 40)
    threads: int | None = None
    #: load only these route keys ("GET /users"); empty: every route found
    routes: list[str] = field(default_factory=list)
    #: --sweep options ("workers=1,2,4"), see fastprof.scan.sweep
    sweep: list[str] = field(default_factory=list)
    sweep_duration: float = 1.5
    sweep_rounds: int = 3
    sweep_warmup: float = 0.5
    app_dir: str = field(default_factory=os.getcwd)


Progress = Callable[[str, int, int], None]  # (what, done, total)


def run_scan(settings: ScanSettings, progress: Progress | None = None) -> ScanResult:
    """Run a scan and write its files; returns the result (also in ``out/findings.json``)."""
    note = progress or (lambda what, done, total: None)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    scenarios = [_load(path) for path in settings.scenarios]
    entries = _load_replay(settings.replay) if settings.replay else None
    for scenario in scenarios:  # the first file's [settings] apply, options set explicitly win
        if scenario.concurrency and settings.concurrency == ScanSettings.concurrency:
            settings.concurrency = scenario.concurrency
        if scenario.duration and settings.duration == ScanSettings.duration:
            settings.duration = scenario.duration
        if scenario.rate and settings.rate is None:
            settings.rate = scenario.rate
        break
    requests = [r for s in scenarios for r in s.requests]
    sweeps = _parse_sweeps(settings, entries is not None)

    workdir = tempfile.mkdtemp(prefix="fastprof-scan-")
    server: _Server | None = None
    extra: dict[str, Any] = {}
    server_findings: list[ScanFinding] = []
    try:
        if settings.url:
            host, port = _parse_url(settings.url)
        else:
            assert settings.app is not None
            host, port = "127.0.0.1", _choose_port(settings.port)
            server = _Server(settings, port, workdir)
            note("starting the app", 0, 1)
            server.start()
            server.wait_ready()
        openapi = _fetch_openapi(host, port, settings.openapi_url)
        found = _only_routes(discover(openapi, requests), settings.routes)
        if settings.url:
            note("checking the server", 0, 1)
            specs = [spec for target in found.targets for spec in target.specs]
            extra["server"], server_findings = check_server(
                host, port, specs, min(settings.timeout, 5.0)
            )
        load: dict[str, LoadResult] = {}
        if entries is not None:
            note("replaying", 0, 1)
            load["*"] = asyncio.run(
                replay(
                    host,
                    port,
                    entries,
                    pace=settings.replay_pace,
                    concurrency=settings.concurrency,
                    timeout=settings.timeout,
                )
            )
        else:
            for index, target in enumerate(found.targets):
                note(target.key, index, len(found.targets))
                load[target.key] = asyncio.run(_load_route(host, port, target, settings))
            note("done", len(found.targets), len(found.targets))
        if server is not None:
            note("stopping the app", 0, 1)
            server.stop()
        workers = _read_workers(workdir)
        if server is not None and not workers:
            raise ScanError(
                "the app stopped without writing its results; its last log lines follow",
                EXIT_APP_CRASH,
                server.tail(),
            )
        counters, trees, findings = merge_workers(workers)
        if sweeps:
            extra["sweep"] = _sweep(settings, sweeps, found, workdir, note)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    result = _assemble(
        settings, started_at, found, load, counters, findings + server_findings, entries is not None
    )
    result["workers"] = [w["pid"] for w in workers]
    # "sweep" and "server" are additions to the schema (docs/findings-json.md)
    cast(dict[str, Any], result).update(extra)
    from fastprof.scan.report import write_report

    write_report(result, trees, settings.out)
    return result


async def _load_route(host: str, port: int, target: Target, settings: ScanSettings) -> LoadResult:
    return await run_load(
        host,
        port,
        target.specs,
        concurrency=settings.concurrency,
        duration=settings.duration,
        rate=settings.rate,
        warmup=settings.warmup,
        timeout=settings.timeout,
    )


#: Detectors that judge the traffic itself. The scan's own load repeats each route with the
#: same parameters, so every deterministic GET would look cacheable: these run on replayed
#: (recorded) traffic, or when named with --detector.
TRAFFIC_DETECTORS = frozenset({"cache_opportunity"})


def _detectors_for(settings: ScanSettings) -> list[str] | bool:
    if settings.detect is not None:
        return settings.detect
    if settings.replay:
        return True
    from fastprof.detectors import DETECTORS

    return [name for name in DETECTORS if name not in TRAFFIC_DETECTORS]


def _parse_sweeps(settings: ScanSettings, replayed: bool) -> list[Sweep]:
    if replayed and settings.routes:
        raise ScanError(
            "--route selects the routes to load; with --replay the recording decides", EXIT_USAGE
        )
    if not settings.sweep:
        return []
    if settings.url:
        raise ScanError(
            "--sweep restarts the app for each setting: give APP, not --url", EXIT_USAGE
        )
    if replayed:
        raise ScanError(
            "--sweep loads the discovered routes; it cannot run with --replay", EXIT_USAGE
        )
    try:
        return parse_sweeps(settings.sweep)
    except SweepError as exc:
        raise ScanError(str(exc), EXIT_USAGE) from None


def _only_routes(found: Discovery, keys: list[str]) -> Discovery:
    """The targets named by --route (all of them when none is named)."""
    if not keys:
        return found
    known = {t.key for t in found.targets}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ScanError(
            f"--route {unknown[0]!r} is not a route this scan can load; loadable routes: "
            + (", ".join(sorted(known)) or "none"),
            EXIT_USAGE,
        )
    return Discovery([t for t in found.targets if t.key in keys], found.skipped)


def _sweep(
    settings: ScanSettings, sweeps: list[Sweep], found: Discovery, workdir: str, note: Progress
) -> SweepResult:
    """Restart the app once per setting (as it is, no profiling) and measure the same mix."""

    @contextmanager
    def serve(setting: Setting) -> Iterator[tuple[str, int]]:
        workers = setting.get("workers", settings.workers)
        threads = setting.get("threads", settings.threads)
        run = replace(
            settings,
            workers=int(workers),
            threads=int(threads) if threads is not None else None,
        )
        rundir = tempfile.mkdtemp(prefix="sweep-", dir=workdir)
        server = _Server(run, _choose_port(None), rundir, profile=False)
        try:
            server.start()
            server.wait_ready()
            yield "127.0.0.1", server.port
        finally:
            server.stop()

    base: dict[str, int | str] = {"workers": settings.workers, "keepalive": "on"}
    if settings.threads is not None:
        base["threads"] = settings.threads
    try:
        return run_sweep(
            sweeps,
            {t.key: t.specs for t in found.targets},
            serve,
            concurrency=settings.concurrency,
            duration=settings.sweep_duration,
            warmup=settings.sweep_warmup,
            timeout=settings.timeout,
            rounds=settings.sweep_rounds,
            base=base,
            progress=note,
        )
    except SweepError as exc:
        raise ScanError(str(exc), EXIT_USAGE) from None


def _assemble(
    settings: ScanSettings,
    started_at: str,
    found: Discovery,
    load: dict[str, LoadResult],
    counters: dict[str, ServerCounters],
    findings: list[ScanFinding],
    replayed: bool,
) -> ScanResult:
    routes: list[RouteResult] = []
    keys = [t.key for t in found.targets] if not replayed else sorted(counters)
    sources = {t.key: t.source for t in found.targets}
    for key in keys:
        server = counters.get(key)
        client = load.get(key)
        per_request = max(server.requests, 1) if server else 1
        if client is not None:
            summary = client.to_dict()
            latency = summary["latency_ms"]
            requests, errors, rps = client.requests, client.errors, client.rps
            status_counts = {str(k): v for k, v in client.status_counts.items()}
            samples, timeouts = client.error_samples, client.timeouts
            histogram = client.latency
        else:  # replay: per-route numbers are the server's
            histogram = server.latency if server else Histogram()
            latency = histogram.summary_ms()
            requests = server.requests if server else 0
            errors = server.errors if server else 0
            rps = 0.0
            status_counts, samples, timeouts = {}, [], 0
        routes.append(
            {
                "route": key,
                "requests": requests,
                "errors": errors,
                "rps": round(rps, 2),
                "latency_ms": {
                    "p50": _round(latency.get("p50")),
                    "p90": _round(latency.get("p90")),
                    "p99": _round(latency.get("p99")),
                    "max": _round(latency.get("max")),
                    "mean": _round(latency.get("mean")),
                },
                "queries_per_request": round(server.queries / per_request, 2) if server else 0.0,
                "blocked_ms": round(server.blocked * 1000 / per_request, 2) if server else 0.0,
                "status_counts": status_counts,
                "error_samples": samples,
                "timeouts": timeouts,
                "source": "replay" if replayed else sources.get(key, "scenario"),
                "files": {},
                "latency_histogram": histogram.to_dict(),
            }
        )
    target = settings.url or settings.app or ""
    plain = asdict(settings)
    plain.pop("app_dir", None)
    result: ScanResult = {
        "schema": SCHEMA,
        "target": target,
        "started_at": started_at,
        "settings": plain,
        "routes": routes,
        "skipped": [{"route": key, "reason": reason} for key, reason in found.skipped],
        "findings": findings,
    }
    if replayed and "*" in load:
        result["settings"]["replay_result"] = load["*"].to_dict()
    return result


def _round(value: Any) -> float:
    return round(float(value), 3) if value is not None else 0.0


# -- the server process ------------------------------------------------------------------------


class _Server:
    def __init__(
        self, settings: ScanSettings, port: int, workdir: str, *, profile: bool = True
    ) -> None:
        self.settings = settings
        self.port = port
        self.workdir = workdir
        self.profile = profile
        self.log_path = os.path.join(workdir, "server.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = {
            "app": self.settings.app,
            "factory": self.settings.factory,
            "app_dir": self.settings.app_dir,
            "out": self.workdir,
            "port": self.port,
            "workers": self.settings.workers,
            "interval": self.settings.interval,
            "detect": _detectors_for(self.settings),
            "profile": self.profile,
            "threads": self.settings.threads,
        }
        env = {**os.environ, child.ENV: json.dumps(config), "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fastprof.scan.child"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.settings.app_dir,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the server
        )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.settings.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self._failed(code)
            # every worker has loaded the app and run its startup (child.ReadyMark), and the
            # socket accepts connections
            if child.ready_count(self.workdir) >= self.settings.workers:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise ScanError(
            f"the app did not start listening on 127.0.0.1:{self.port} within "
            f"{self.settings.startup_timeout:g} s",
            EXIT_APP_CRASH,
            self.tail(),
        )

    def _failed(self, code: int) -> None:
        lines = self.tail()
        for line in lines:
            if line.startswith(child.ERROR_MARK):
                raise ScanError(
                    f"cannot load {self.settings.app}: {line[len(child.ERROR_MARK) :]}",
                    EXIT_APP_LOAD,
                )
        raise ScanError(
            f"the app exited during startup (exit status {code}); its last log lines follow",
            EXIT_APP_CRASH,
            lines,
        )

    def tail(self, count: int = 15) -> list[str]:
        try:
            with open(self.log_path, "rb") as f:
                text = f.read()[-20000:].decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-count:]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            # SIGINT: uvicorn's graceful shutdown, so every worker runs lifespan shutdown
            # and writes its results.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._log.close()


def _choose_port(port: int | None) -> int:
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            chosen: int = s.getsockname()[1]
            return chosen
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ScanError(
                f"port {port} on 127.0.0.1 is in use; pick another with --port, or leave it "
                "out to use a free one",
                EXIT_PORT,
            ) from None
    return port


def _parse_url(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ScanError(
            f"--url {url!r} is not an http:// URL like http://127.0.0.1:8000", EXIT_USAGE
        )
    host = parts.hostname
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise ScanError(
            f"--url {url!r}: fastprof only sends load to this machine (127.0.0.1/localhost)",
            EXIT_USAGE,
        )
    port = parts.port or 80
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as exc:
        raise ScanError(
            f"nothing answers at {url}: {exc.strerror or exc}", EXIT_APP_CRASH
        ) from None
    return host, port


def _fetch_openapi(host: str, port: int, path: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
            data: Any = orjson.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_workers(workdir: str) -> list[child.WorkerResult]:
    results = []
    for name in sorted(os.listdir(workdir)):
        if name.startswith("worker-") and name.endswith(".json"):
            with open(os.path.join(workdir, name), "rb") as f:
                results.append(orjson.loads(f.read()))
    return results


def _load(path: str) -> Scenario:
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        raise ScanError(str(exc), EXIT_USAGE) from None


def _load_replay(path: str) -> list[ReplayEntry]:
    try:
        if path.endswith(".har"):
            return load_har(path)
        return load_jsonl(path)
    except FileNotFoundError:
        raise ScanError(f"{path}: no such file", EXIT_USAGE) from None
    except ValueError as exc:
        raise ScanError(str(exc), EXIT_USAGE) from None
