"""``FastprofMiddleware``: pure ASGI, safe to leave installed in production.

Per request it decides, from a few attribute reads, whether anything is to be done:

* a **trigger** (header or query parameter, off unless named; from a non-loopback client it
  also needs the configured token, and without it the request is treated as untriggered),
* a **sample rate** (this share of requests is profiled: by default with the signal sampler at
  ``interval``, which costs only the sampled request - pyinstrument's hook would slow down
  every request on the loop while one sampled request runs; an explicit ``backend`` is used
  as given),
* the **continuous sampler** (``backend="continuous"``, or a ``slow_ms`` threshold): every
  request is sampled at a low rate; the samples feed per-route trees and are kept as a profile
  only when the request turns out slow (or failed) - fast requests never pay a full profiler,
* **timing**: method, route template, status, duration and response bytes of every request.

A failure inside fastprof is logged and the request proceeds; the app's own exceptions
propagate unchanged, and the response is never altered - except for one header,
``x-fastprof-profile`` naming the kept profile, on requests that asked for profiling with the
header or query trigger.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import random
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastprof import _threadpool
from fastprof._context import current_capture, current_request, current_sampled
from fastprof.backends import Backend, make_backend
from fastprof.backends.base import Capture, TreeSource
from fastprof.backends.continuous import (
    CAPTURE,
    NBYTES,
    STATUS,
    ContinuousBackend,
    Sample,
    SampledCapture,
    SampledRequest,
    Sampler,
    samples_into,
)
from fastprof.config import MiddlewareConfig
from fastprof.detectors import Detector
from fastprof.findings import Finding
from fastprof.guard import forward
from fastprof.metrics import PrometheusMetrics
from fastprof.model import CallTree
from fastprof.record import ProfileRecord, RequestRecord, RequestState, Trigger
from fastprof.recorder import TrafficRecorder
from fastprof.store import ProfileStore

logger = logging.getLogger("fastprof")

_time = time.time
_perf_counter = time.perf_counter

_get_ident = threading.get_ident
_MAIN = threading.main_thread().ident

PROFILE_HEADER = b"x-fastprof-profile"


class FastprofMiddleware:
    """Capture per-request call trees and timings. See the module docstring and docs/guide.md.

    :param backend: ``"pyinstrument"``, ``"yappi"``, ``"py-spy"``, ``"continuous"`` or a
        Backend subclass: what profiles triggered and sampled requests. Default (None):
        pyinstrument for triggered requests, the 1 kHz signal sampler for sampled ones.
    :param interval: sampling interval of the backend, seconds.
    :param trigger_header: header name that asks for a profile (e.g. ``"x-fastprof"``); off if None.
    :param trigger_query: query parameter asking for a profile (e.g. ``"fastprof"``); off if None.
    :param token: secret a non-loopback client must send (``x-fastprof-token`` header or
        ``fastprof_token`` query parameter) for a trigger to count.
    :param sample_rate: share of requests, 0.0-1.0, profiled with the backend.
    :param slow_ms: keep a profile only if the request took at least this long; requests not
        triggered or sampled are covered by the continuous sampler for this.
    :param continuous_interval: the continuous sampler's interval, seconds (0.01 = 100 Hz).
    :param keep_errors: keep the profile of a 5xx response or an exception even when
        ``slow_ms`` would drop it.
    :param timing: record method/route/status/duration/bytes of every request.
    :param include: glob patterns of paths to consider (all if empty).
    :param exclude: glob patterns of paths to ignore.
    :param store: where kept profiles go (default: a new in-memory :class:`ProfileStore`).
    :param directory: also write kept profiles to this directory (one file each).
    :param max_profiles: profiles kept in memory.
    :param max_directory_bytes: size cap of ``directory``; oldest files go first.
    :param on_request: called with each :class:`RequestRecord` (when ``timing`` is on).
    :param on_profile: called with each kept :class:`ProfileRecord`.
    :param detect: run detectors on every request: True for all of them, or a list of names
        (``"event_loop_blocking"``, ``"n_plus_one"``, ...; see ``fastprof.detectors``).
    :param detector_options: per-detector options, e.g.
        ``{"event_loop_blocking": {"threshold_ms": 50}}``.
    :param on_finding: called with each :class:`~fastprof.findings.Finding`.
    :param record_to: append every request (method, path, query, the ``record_headers``,
        up to ``record_body_bytes`` of body, status, timing) to this JSONL file, for
        ``fastprof scan --replay``.
    :param metrics: export Prometheus metrics (True, or a
        :class:`~fastprof.metrics.PrometheusMetrics` with your registry); turns timing on.
    :param metrics_path: where the middleware serves the metrics (None: not served; read
        ``middleware.metrics.registry`` with your own exporter).
    :param enabled: False makes the middleware a pass-through.
    """

    # What every request reads, as slots: a plain instance with this many attributes keeps
    # them in a dictionary, and each read was a lookup (bench/hotpath.py). The rest, and
    # anything a test patches, live in __dict__.
    __slots__ = (
        "__dict__",
        "_active",
        "_add_request",
        "_always",
        "_fixed",
        "_fixed_trigger",
        "_header",
        "_hooked",
        "_keep_errors",
        "_lean",
        "_metrics_path",
        "_on_request",
        "_passive",
        "_paths",
        "_plain",
        "_query",
        "_random",
        "_rate",
        "_slow",
        "_ticker",
        "_timing",
        "_token",
        "app",
        "sampler",
        "store",
    )

    def __init__(
        self,
        app: ASGIApp,
        *,
        backend: str | type[Backend] | None = None,
        interval: float = 0.001,
        trigger_header: str | None = None,
        trigger_query: str | None = None,
        token: str | None = None,
        sample_rate: float = 0.0,
        slow_ms: float | None = None,
        continuous_interval: float = 0.01,
        keep_errors: bool = True,
        timing: bool = False,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        store: ProfileStore | None = None,
        directory: str | None = None,
        max_profiles: int = 100,
        max_directory_bytes: int = 100 * 1024 * 1024,
        on_request: Callable[[RequestRecord], None] | None = None,
        on_profile: Callable[[ProfileRecord], None] | None = None,
        detect: bool | Sequence[str | type[Detector] | Detector] = False,
        detector_options: dict[str, dict[str, Any]] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        record_to: str | None = None,
        record_headers: Sequence[str] = ("content-type", "accept"),
        record_body_bytes: int = 64 * 1024,
        metrics: bool | PrometheusMetrics = False,
        metrics_path: str | None = "/metrics",
        enabled: bool = True,
    ) -> None:
        self.app = app
        self.config = config = MiddlewareConfig.validate(
            backend=backend,
            interval=interval,
            trigger_header=trigger_header,
            trigger_query=trigger_query,
            token=token,
            sample_rate=sample_rate,
            slow_ms=slow_ms,
            continuous_interval=continuous_interval,
            keep_errors=keep_errors,
            timing=timing,
            include=include,
            exclude=exclude,
            store=store,
            directory=directory,
            max_profiles=max_profiles,
            max_directory_bytes=max_directory_bytes,
            on_request=on_request,
            on_profile=on_profile,
            detect=detect,
            detector_options=detector_options,
            on_finding=on_finding,
            record_to=record_to,
            record_headers=record_headers,
            record_body_bytes=record_body_bytes,
            metrics=metrics,
            metrics_path=metrics_path,
            enabled=enabled,
        )
        self.store = (
            store
            if store is not None
            else ProfileStore(
                max_profiles=max_profiles,
                directory=directory,
                max_directory_bytes=max_directory_bytes,
            )
        )
        if on_profile is not None:
            self.store.subscribe(on_profile)
        self.metrics: PrometheusMetrics | None = None
        if metrics is not False:
            from fastprof.metrics import PrometheusMetrics

            self.metrics = (
                metrics if isinstance(metrics, PrometheusMetrics) else PrometheusMetrics()
            )
            self.store.subscribe_findings(self.metrics.on_finding)
            timing = True
            on_request = _chain(self.metrics.on_request, on_request)
        self._metrics_path = metrics_path if self.metrics is not None else None
        if on_finding is not None:
            self.store.subscribe_findings(on_finding)
        self.detectors: list[Detector] = config.detectors
        self._beginners = [d for d in self.detectors if type(d).begin is not Detector.begin]
        self._digest = any(d.wants_body for d in self.detectors)
        self._detectors_started = False
        continuous = config.backend_class is ContinuousBackend
        # The sampler covers every request (continuous) or every request not otherwise
        # profiled, so that slow ones have samples (slow_ms).
        self.sampler = (
            ContinuousBackend(interval=continuous_interval)
            if continuous or slow_ms is not None
            else None
        )
        self.backend: Backend = (
            self.sampler
            if continuous and self.sampler is not None
            else make_backend(config.backend_class, interval=interval)
        )
        #: What profiles sampled requests: the backend chosen, or by default the signal
        #: sampler at ``interval`` (it costs only the sampled request itself).
        self.sample_backend: Backend = (
            self.backend if backend is not None else ContinuousBackend(interval=interval)
        )
        #: The process's sampler, when there is one; ``_passive``: it finds this middleware's
        #: continuous requests by itself (see ``SampledRequest``), decided on the first.
        self._ticker = Sampler.shared()  # the one ContinuousBackend uses
        self._passive = False
        self._route_trees: dict[str, CallTree] = {}
        self._route_samples: dict[str, list[Sample]] = {}
        self._hooked = False
        self._header = trigger_header.lower().encode("latin-1") if trigger_header else None
        self._query = trigger_query.encode("latin-1") if trigger_query else None
        self._token = token
        self._rate = sample_rate
        self._slow = slow_ms / 1000 if slow_ms is not None else None
        self._keep_errors = keep_errors
        self._timing = timing
        self._on_request = on_request
        self._paths = config.path_filter
        self._random = random.random
        self.recorder = (
            TrafficRecorder(record_to, headers=record_headers, body_bytes=record_body_bytes)
            if record_to is not None
            else None
        )
        self._always = timing or bool(self.detectors) or self.recorder is not None
        self._active = enabled and (
            self._always
            or self.sampler is not None
            or sample_rate > 0
            or bool(self._header or self._query)
        )
        # Without a path filter, a header/query trigger or a sample rate, every request is
        # captured for the same reason: no decision to make per request.
        self._fixed = (
            self._paths is None and self._header is None and self._query is None and not sample_rate
        )
        self._fixed_trigger: Trigger | None = "continuous" if self.sampler is not None else None
        # Without detectors or a recorder, a request served for timing or the continuous
        # sampler needs no per-request state: __call__ serves it itself (see there).
        self._lean = not self.detectors and self.recorder is None
        # ... and when that is every HTTP request, __call__ goes straight to it.
        self._plain = (
            self._active
            and self._fixed
            and self._lean
            and self._metrics_path is None
            and (self._always or self.sampler is not None)
        )
        # What every request of a busy server runs has a class of its own, with nothing else
        # in its __call__ (see the classes below).
        if self._plain and self._timing and self.sampler is None:
            self.__class__ = _TimingMiddleware
        elif (
            self._active
            and not self._always
            and self.sampler is None
            and self._paths is None
            and self._metrics_path is None
        ):
            if not sample_rate:
                self.__class__ = _AskedMiddleware
            elif self._header is None and self._query is None:
                self.__class__ = _SampleRateMiddleware
        store_type = type(self.store)
        self._add_request: Callable[[tuple[Any, ...]], None] = (
            self.store.raw_requests.append  # what add_request does, one Python call less
            if store_type.add_request is ProfileStore.add_request
            else self.store.add_request
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._plain and scope["type"] == "http":
            trigger = self._fixed_trigger
        else:
            if scope["type"] != "http" or not self._active:
                if scope["type"] == "lifespan" and self._active:
                    send = self._watch_lifespan(send)
                    receive = self._watch_lifespan_receive(receive)
                await self.app(scope, receive, send)
                return
            if self._metrics_path is not None and scope["path"] == self._metrics_path:
                await self._serve_metrics(send)
                return
            if self._fixed:
                trigger = self._fixed_trigger
            else:
                try:
                    trigger = self._trigger(scope)
                except Exception:
                    logger.exception(
                        "fastprof: deciding whether to profile failed; the request continues"
                    )
                    trigger = None
            if trigger is None and not self._always:
                await self.app(scope, receive, send)
                return
            if not self._lean or (trigger is not None and trigger != "continuous"):
                await self._serve(scope, receive, send, trigger)
                return
        # The paths that run on every request - timing, the continuous sampler, or both -
        # served right here: _serve's coroutine, its RequestState and the body fingerprint
        # would cost more than everything else they do (bench/hotpath.py measures it).
        # The wall-clock start only matters to timing; a kept profile works it out below.
        started_at = time.time() if self._timing else 0.0
        started = time.perf_counter()
        capture: SampledCapture | None = None
        capture_token = sampled_token = None
        if trigger is not None:
            try:
                assert self.sampler is not None
                if not self._hooked:
                    self._hook(passive=True)
                if (
                    self._passive
                    and _get_ident() == _MAIN
                    and (self._ticker.armed or self._ticker.wake_passive())
                ):
                    # No registration: the sampler finds the request in its context.
                    # SampledRequest; a tick reads the local ``sampled`` by name from a
                    # suspended request's frame (continuous._holder_in)
                    sampled = [self.sampler, None, 0, 0]
                    sampled_token = current_sampled.set(sampled)
                else:
                    capture = self.sampler.start(sys._getframe(), is_async=True)
                    capture_token = current_capture.set(capture)
            except Exception:
                logger.exception("fastprof: starting the capture failed; the request continues")
                capture = None
        response = _Response(send)
        error: BaseException | None = None
        try:
            await self.app(scope, receive, response.send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            duration = time.perf_counter() - started
            if capture_token is not None:
                current_capture.reset(capture_token)
            elif sampled_token is not None:
                current_sampled.reset(sampled_token)
            route = None
            try:
                status = response.status or (500 if error is not None else 0)
                if self._timing:
                    route = self._record(scope, None, status, response.nbytes, duration, started_at)
                if capture is not None:
                    samples = capture.detach()
                    # Most requests have no sample and are neither slow nor failed.
                    if samples or self._slow is not None or status >= 500 or error is not None:
                        self._settle(
                            scope,
                            route,
                            capture,
                            samples,
                            status,
                            response,
                            duration,
                            started_at or time.time() - duration,
                            error,
                            None,
                            None,
                        )
            except Exception:
                logger.exception("fastprof: finishing the capture failed; the request continues")
            if sampled_token is not None:  # never fails: it logs its own failures
                self._end_sampled(scope, sampled, response, started, error, route)
            if capture is not None:
                # The anchor is this very frame, and the frame holds the capture: left as is,
                # the cycle makes CPython keep every frame of the request alive for the GC.
                capture.anchor = None

    def _hook(self, *, passive: bool) -> None:
        """Install what the continuous mode needs once, held until close(): every request
        would take it otherwise. ``passive``: requests the sampler finds by itself, if it can."""
        _threadpool.acquire()
        self._hooked = True
        if passive and self.sampler is not None:
            self._passive = self._ticker.add_passive(_ANCHOR_CODES, self.sampler.in_use)
            if self._passive and self._plain and not self._timing:
                self.__class__ = _SampledMiddleware

    def _wake_sampler(self) -> bool:
        """Start or wake the sampler's timer; False (the request registers) if it cannot."""
        try:
            return self._ticker.wake_passive()
        except Exception:
            logger.exception("fastprof: waking the sampler failed; the request continues")
            return False

    def _end_sampled(
        self,
        scope: Scope,
        sampled: SampledRequest,
        response: _Response,
        started: float,
        error: BaseException | None,
        route: str | None = None,
    ) -> None:
        """A continuous request the sampler found by itself ended: its samples to the route,
        its profile if kept (slow, or failed). ``route``: its template, if known already."""
        duration = _perf_counter() - started
        found = sampled[CAPTURE]
        sampled[CAPTURE] = False  # ended: no tick may start a capture now
        capture = found if found is not False else None
        try:
            status = response.status or (500 if error is not None else 0)
            if capture is None:
                slow = self._slow is not None and duration >= self._slow
                if not (slow or status >= 500 or error is not None):
                    return
                assert self.sampler is not None
                capture = SampledCapture.unregistered(self.sampler, None, started)
            samples = capture.detach()
            self._settle(
                scope,
                route,
                capture,
                samples,
                status,
                response,
                duration,
                time.time() - duration,
                error,
                None,
                None,
            )
        except Exception:
            logger.exception("fastprof: finishing the capture failed; the request continues")
        finally:
            if capture is not None:
                capture.anchor = None  # the anchor frame holds the capture: no cycle left

    def _record_failed(
        self, scope: Scope, status: int, nbytes: int, started: float, started_at: float
    ) -> None:
        """The timing mode's record of a request whose app raised."""
        duration = _perf_counter() - started
        try:
            self._record(scope, None, status or 500, nbytes, duration, started_at)
        except Exception:
            logger.exception("fastprof: recording the request failed; it continues")

    def _trigger(self, scope: Scope) -> Trigger | None:
        """Why this request is captured (None: it is not), in order of precedence."""
        if self._paths is not None and not self._paths(scope["path"]):
            return None
        if self._header is not None or self._query is not None:
            asked = self._asked(scope)
            if asked is not None:
                return asked
        if self._rate and self._random() < self._rate:
            return "sample"
        if self.sampler is not None:
            return "continuous"
        return None

    def _asked(self, scope: Scope) -> Trigger | None:
        header = self._header
        asked: Trigger | None = None
        token: str | None = None
        for name, value in scope["headers"]:
            if name == header and value not in (b"0", b"false", b""):
                asked = "header"
            elif name == b"x-fastprof-token":
                token = value.decode("latin-1")
        query_string: bytes = scope.get("query_string", b"")
        if self._query is not None and query_string.find(self._query) >= 0:
            params = _parse_query(query_string)
            if params.get(self._query.decode("latin-1"), "0") not in ("0", "false", ""):
                asked = asked or "query"
            token = token or params.get("fastprof_token")
        if asked is None:
            return None
        if _is_loopback(scope.get("client")):
            return asked
        # From elsewhere a trigger needs the configured token; without one it does nothing.
        if (
            self._token is not None
            and token is not None
            and hmac.compare_digest(token.encode(), self._token.encode())
        ):
            return asked
        return None

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, trigger: Trigger | None
    ) -> None:
        started_at = time.time()
        started = time.perf_counter()
        state: RequestState | None = None
        capture: Capture | None = None
        request_token = capture_token = None
        add_header = trigger == "header" or trigger == "query"
        digest = self._digest and scope["method"] == "GET"
        response = (
            _MarkedResponse(send, add_header, digest) if add_header or digest else _Response(send)
        )
        if trigger is not None or self.detectors:
            try:
                # The continuous sampler alone needs no per-request state: keep its path lean.
                if self.detectors or trigger != "continuous":
                    if self.detectors and not self._detectors_started:
                        self._start_detectors()
                    state = RequestState(scope["method"], scope["path"], started)
                    state.query = scope.get("query_string", b"")
                    for detector in self._beginners:
                        detector.begin(state)
                    request_token = current_request.set(state)
                if trigger == "continuous":
                    assert self.sampler is not None
                    if not self._hooked:
                        self._hook(passive=False)
                    capture = self.sampler.start(sys._getframe(), is_async=True)
                elif trigger is not None:
                    chosen = self.sample_backend if trigger == "sample" else self.backend
                    capture = chosen.start(sys._getframe(), is_async=True)
                    _threadpool.acquire()
                if capture is not None:
                    capture_token = current_capture.set(capture)
            except Exception:
                logger.exception("fastprof: starting the capture failed; the request continues")
                if capture is not None and trigger != "continuous":
                    _threadpool.release()
                capture = None
        body: list[bytes] | None = None
        if self.recorder is not None:
            try:
                receive, body = self.recorder.wrap_receive(receive)
            except Exception:
                logger.exception("fastprof: recording the request failed; the request continues")
        error: BaseException | None = None
        try:
            await self.app(scope, receive, response.send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            duration = time.perf_counter() - started
            # Always undo the context, even if finishing fails below.
            if capture_token is not None:
                current_capture.reset(capture_token)
            if request_token is not None:
                current_request.reset(request_token)
            try:
                if body is not None and self.recorder is not None:
                    self.recorder.record(scope, body, started_at, duration, response.status or 500)
                self._finish(scope, state, response, capture, trigger, duration, started_at, error)
            except Exception:
                logger.exception("fastprof: finishing the capture failed; the request continues")
            if capture is not None:
                # The anchor is this very frame, and the frame holds the capture: left as is,
                # the cycle makes CPython keep every frame of the request alive for the GC.
                capture.anchor = None

    def _finish(
        self,
        scope: Scope,
        state: RequestState | None,
        response: _Response,
        capture: Capture | None,
        trigger: Trigger | None,
        duration: float,
        started_at: float,
        error: BaseException | None,
    ) -> None:
        samples: Sequence[Sample] | None = None
        source = None
        if trigger == "continuous" and isinstance(capture, SampledCapture):
            samples = capture.detach()
        elif capture is not None:
            try:
                source = capture.stop()
            finally:
                _threadpool.release()
        status = response.status or (500 if error is not None else 0)
        # The route is looked up only when something needs it.
        route: str | None = None
        findings: list[Finding] | None = None
        if state is not None and (self.detectors or state.findings):
            route = _route_template(scope)
            if response.body_hash is not None:
                state.facts["response_digest"] = response.body_hash.hexdigest()
                state.facts["duration"] = duration
                state.facts["endpoint"] = scope.get("endpoint")
            findings = self._findings(state, f"{scope['method']} {route}", status, response.nbytes)
        if self._timing:
            route = self._record(
                scope, route, status, response.nbytes, duration, started_at, state, findings
            )
        if capture is None:
            return
        if samples is not None:
            assert isinstance(capture, SampledCapture)
            self._settle(
                scope,
                route,
                capture,
                samples,
                status,
                response,
                duration,
                started_at,
                error,
                state,
                findings,
            )
            return
        if (
            trigger == "sample"
            and self._slow is not None
            and duration < self._slow
            and not ((status >= 500 or error is not None) and self._keep_errors)
        ):
            return
        assert source is not None
        self._keep(
            scope,
            route,
            trigger or "sample",
            source,
            status,
            response,
            duration,
            started_at,
            error,
            state,
            findings,
        )

    def _record(
        self,
        scope: Scope,
        route: str | None,
        status: int,
        nbytes: int,
        duration: float,
        started_at: float,
        state: RequestState | None = None,
        findings: list[Finding] | None = None,
    ) -> str:
        """Record the request's timing; returns its route template."""
        if route is None:
            route = _route_template(scope)
        # A plain tuple for the store (see ProfileStore.raw_requests)
        raw = (
            scope["method"],
            route,
            scope["path"],
            status,
            duration,
            nbytes,
            started_at,
            len(state.queries) if state is not None else 0,
            state.blocked if state is not None else 0.0,
            len(findings) if findings else 0,
        )
        self._add_request(raw)
        if self._on_request is not None:
            # tuple.__new__ directly: RequestRecord's generated __new__ is a Python call
            self._on_request(_new_record(RequestRecord, raw))
        return route

    def _settle(
        self,
        scope: Scope,
        route: str | None,
        capture: SampledCapture,
        samples: Sequence[Sample],
        status: int,
        response: _Response,
        duration: float,
        started_at: float,
        error: BaseException | None,
        state: RequestState | None,
        findings: list[Finding] | None,
    ) -> None:
        """The continuous sampler's part: the samples go to the route's tree; the request's
        own profile is kept only if it was slow or failed."""
        if samples:
            if route is None:
                route = _route_template(scope)
            self._add_route_samples(f"{scope['method']} {route}", samples)
        slow = self._slow is not None and duration >= self._slow
        if not (slow or ((status >= 500 or error is not None) and self._keep_errors)):
            return
        self._keep(
            scope,
            route,
            "slow" if slow else "error",
            capture.tree_source(samples, duration),
            status,
            response,
            duration,
            started_at,
            error,
            state,
            findings,
        )

    def _keep(
        self,
        scope: Scope,
        route: str | None,
        trigger: Trigger,
        source: TreeSource,
        status: int,
        response: _Response,
        duration: float,
        started_at: float,
        error: BaseException | None,
        state: RequestState | None,
        findings: list[Finding] | None,
    ) -> None:
        """Keep the request's profile in the store."""
        profile = ProfileRecord(
            id=response.profile_id or uuid.uuid4().hex[:16],
            trigger=trigger,
            backend=(
                "continuous"
                if trigger in ("slow", "error")
                else self.sample_backend.name
                if trigger == "sample"
                else self.backend.name
            ),
            source=source,
            method=scope["method"],
            route=route if route is not None else _route_template(scope),
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            status=status,
            duration=duration,
            response_bytes=response.nbytes,
            started_at=started_at,
            error=type(error).__name__ if error is not None else None,
            blocks=state.blocks if state is not None else [],
            findings=findings if findings is not None else [],
        )
        self.store.add_profile(profile)

    def _add_route_samples(self, key: str, samples: Sequence[Sample]) -> None:
        pending = self._route_samples.get(key)
        if pending is None:
            pending = self._route_samples[key] = []
        pending.extend(samples)
        if len(pending) > 20_000:  # fold now and then, so memory stays bounded
            self._fold(key)

    def _fold(self, key: str) -> None:
        samples = self._route_samples.pop(key, [])
        tree = self._route_trees.get(key)
        if tree is None:
            assert self.sampler is not None
            tree = self._route_trees[key] = CallTree(
                backend="continuous", interval=self.sampler.interval
            )
        tree.duration += samples_into(tree, samples)

    @property
    def route_trees(self) -> dict[str, CallTree]:
        """Per-route trees from the continuous sampler: every request, not only kept ones."""
        for key in list(self._route_samples):
            self._fold(key)
        return self._route_trees

    async def _serve_metrics(self, send: Send) -> None:
        assert self.metrics is not None
        body, content_type = self.metrics.exposition()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode("latin-1")),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _findings(self, state: RequestState, route: str, status: int, nbytes: int) -> list[Finding]:
        state.route, state.status = route, status
        state.facts.setdefault("response_bytes", nbytes)
        found = [f if f.route is not None else f.on_route(route) for f in state.findings]
        for detector in self.detectors:
            try:
                found.extend(
                    f if f.route is not None else f.on_route(route) for f in detector.finish(state)
                )
            except Exception:
                logger.exception(
                    "fastprof: detector %s failed; the request continues", detector.kind
                )
        if found:
            self.store.add_findings(found)
            forward(found)
        return found

    def _start_detectors(self) -> None:
        self._detectors_started = True
        for detector in self.detectors:
            try:
                detector.start()
            except Exception:
                logger.exception("fastprof: starting detector %s failed", detector.kind)
        app_findings: list[Finding] = []
        for detector in self.detectors:
            try:
                app_findings.extend(detector.app_findings(self.app))
            except Exception:
                logger.exception("fastprof: detector %s failed on the app", detector.kind)
        if app_findings:
            self.store.add_findings(app_findings)

    def _watch_lifespan_receive(self, receive: Receive) -> Receive:
        """Start detectors as startup begins, so connections the app opens then are seen."""

        async def watching() -> Message:
            message = await receive()
            if (
                message["type"] == "lifespan.startup"
                and self.detectors
                and not self._detectors_started
            ):
                try:
                    self._start_detectors()
                except Exception:
                    logger.exception("fastprof: starting detectors failed")
            return message

        return watching

    def _watch_lifespan(self, send: Send) -> Send:
        """Start detectors at startup and release everything at shutdown; messages unchanged."""

        async def watching(message: Message) -> None:
            await send(message)
            kind = message["type"]
            try:
                if kind == "lifespan.startup.complete" and self.detectors:
                    if not self._detectors_started:
                        self._start_detectors()
                elif kind == "lifespan.shutdown.complete":
                    self.close()
            except Exception:
                logger.exception("fastprof: lifespan handling failed")

        return watching

    def close(self) -> None:
        """Stop background work (sampler, detectors, global profiler hooks, the sink)."""
        if self._detectors_started:
            self._detectors_started = False
            for detector in self.detectors:
                try:
                    detector.stop()
                except Exception:
                    logger.exception("fastprof: stopping detector %s failed", detector.kind)
        if self._hooked:
            self._hooked = False
            _threadpool.release()
            if self._passive and self.sampler is not None:
                self._passive = False
                self._ticker.remove_passive(self.sampler.in_use)
        self.backend.close()
        if self.sample_backend is not self.backend:
            self.sample_backend.close()
        if self.recorder is not None:
            self.recorder.flush()
        if self.sampler is not None:
            self.sampler.close()
        self.store.close()


class _TimingMiddleware(FastprofMiddleware):
    """``FastprofMiddleware(timing=True)`` and nothing else that decides per request: every
    HTTP request is served by this one block (FastprofMiddleware switches to it in
    ``__init__``; its own ``__call__``'s frame and checks cost a hello-world request about 1%,
    bench/icount.py and docs/performance.md)."""

    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await FastprofMiddleware.__call__(self, scope, receive, send)
            return
        started_at = _time()
        started = _perf_counter()
        sent = [0, 0]  # status, body bytes

        # A closure, not a _Response: no object and no __init__ call per request
        def watch(message: Message) -> Awaitable[None]:
            kind = message["type"]
            if kind == "http.response.body":
                sent[1] += len(message.get("body", b""))
            elif kind == "http.response.start":
                sent[0] = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, watch)
        except BaseException:
            self._record_failed(scope, sent[0], sent[1], started, started_at)
            raise
        duration = _perf_counter() - started
        try:  # _record, inlined
            found = scope.get("route")
            route = getattr(found, "path", None)
            if route.__class__ is not str or scope.get("root_path"):
                route = _route_template(scope)
            # A plain tuple: see ProfileStore.raw_requests.
            raw = (
                scope["method"],
                route,
                scope["path"],
                sent[0],
                duration,
                sent[1],
                started_at,
                0,
                0.0,
                0,
            )
            self._add_request(raw)
            if self._on_request is not None:
                self._on_request(_new_record(RequestRecord, raw))
        except Exception:
            logger.exception("fastprof: recording the request failed; it continues")


class _SampledMiddleware(FastprofMiddleware):
    """``FastprofMiddleware(backend="continuous")`` (or ``slow_ms``) and nothing else that
    decides per request, once the sampler can find requests by itself: each costs a context
    variable (FastprofMiddleware switches to it on its first request, see ``_hook``)."""

    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and _get_ident() == _MAIN
            and (self._ticker.armed or self._wake_sampler())
        ):
            await FastprofMiddleware.__call__(self, scope, receive, send)
            return
        started = _perf_counter()
        # The holder the sampler finds in the context (SampledRequest: a list, the cheapest
        # object to make), and a closure that notes the status and body size in it: together
        # they measured about 0.3 us a request cheaper than a holder and a _Response object.
        # A tick reads the local ``sampled`` by name from a suspended request's frame
        # (continuous._holder_in): keep the name.
        sampled: SampledRequest = [self.sampler, None, 0, 0]

        def watch(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                sampled[2] = message["status"]
            else:
                sampled[3] += len(message.get("body", b""))
            return send(message)

        token = current_sampled.set(sampled)
        try:
            await self.app(scope, receive, watch)
        except BaseException as exc:
            current_sampled.reset(token)
            self._end_sampled(scope, sampled, _Response.ended(sampled), started, exc)
            raise
        current_sampled.reset(token)
        if (
            sampled[1] is not None
            or sampled[2] >= 500
            or (self._slow is not None and _perf_counter() - started >= self._slow)
        ):
            self._end_sampled(scope, sampled, _Response.ended(sampled), started, None)
        else:
            sampled[1] = False


class _SampleRateMiddleware(FastprofMiddleware):
    """A sample rate and nothing else: one random draw decides (FastprofMiddleware switches
    to it in ``__init__``)."""

    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await FastprofMiddleware.__call__(self, scope, receive, send)
        elif self._random() >= self._rate:
            await self.app(scope, receive, send)
        else:
            await self._serve(scope, receive, send, "sample")


class _AskedMiddleware(FastprofMiddleware):
    """Only a trigger header or query parameter can make a request matter: a request with
    neither goes straight through (FastprofMiddleware switches to it in ``__init__``)."""

    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = self._header
            if header is not None:
                for name, _ in scope["headers"]:
                    if name == header:
                        break
                else:
                    header = None
            if header is None:
                query = self._query
                # find(), not "in": bytes.__contains__ first tries the operand as an integer
                # and builds a TypeError to discard (measured: ~1.5k instructions a request)
                query_string = scope.get("query_string")
                if query is None or not query_string or query_string.find(query) < 0:
                    await self.app(scope, receive, send)
                    return
        await FastprofMiddleware.__call__(self, scope, receive, send)


class _Response:
    """Wraps ``send`` to learn the status and body size."""

    __slots__ = ("_send", "nbytes", "status")

    #: The profile id announced in the response header (see _MarkedResponse).
    profile_id: str | None = None
    #: The body's fingerprint, for detectors that want it (see _MarkedResponse).
    body_hash: Any = None

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.nbytes = 0

    @classmethod
    def ended(cls, sampled: SampledRequest) -> _Response:
        """What a passive request's ``send`` wrapper noted in its holder, once it has ended."""
        response = cls.__new__(cls)
        response.status = sampled[STATUS]
        response.nbytes = sampled[NBYTES]
        return response

    def send(self, message: Message) -> Awaitable[None]:
        # Not a coroutine: it hands back the server's awaitable, so a message costs one frame
        # less (ASGI's send need only return something to await).
        kind = message["type"]
        if kind == "http.response.body":
            self.nbytes += len(message.get("body", b""))
        elif kind == "http.response.start":
            self.status = message["status"]
        return self._send(message)


class _MarkedResponse(_Response):
    """A :class:`_Response` that also adds the profile header, or fingerprints the body."""

    __slots__ = ("add_header", "body_hash", "profile_id")

    def __init__(self, send: Send, add_header: bool, digest: bool = False) -> None:
        super().__init__(send)
        self.add_header = add_header
        self.profile_id: str | None = None
        self.body_hash = hashlib.blake2b(digest_size=16) if digest else None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            self.nbytes += len(body)
            if self.body_hash is not None:
                self.body_hash.update(body)
        elif message["type"] in ("http.response.pathsend", "http.response.zerocopysend"):
            self.body_hash = None  # the body goes past us: no fingerprint
        elif message["type"] == "http.response.start":
            self.status = message["status"]
            if self.add_header:
                # The profile id is known only after the request ends; reserve the id now.
                self.profile_id = uuid.uuid4().hex[:16]
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    (PROFILE_HEADER, self.profile_id.encode()),
                ]
        await self._send(message)


def _chain(
    first: Callable[[RequestRecord], None], second: Callable[[RequestRecord], None] | None
) -> Callable[[RequestRecord], None]:
    if second is None:
        return first

    def both(record: RequestRecord) -> None:
        first(record)
        second(record)

    return both


_new_record = tuple.__new__


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        root = scope.get("root_path")
        if not root:
            return path
        # Mounted apps see their own path; prefix what the mount consumed.
        app_root = scope.get("app_root_path", root)
        prefix = root[len(app_root) :] if root.startswith(app_root) else ""
        return prefix + path
    endpoint = scope.get("endpoint")
    router = scope.get("router")
    if endpoint is not None and router is not None:
        for candidate in getattr(router, "routes", ()):
            if getattr(candidate, "endpoint", None) is endpoint:
                found = getattr(candidate, "path", None)
                if isinstance(found, str):
                    return found
    path_str: str = scope["path"]
    return path_str


def _parse_query(query_string: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


def _is_loopback(client: Any) -> bool:
    if not client:
        return False
    host = client[0]
    if host in ("127.0.0.1", "::1", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: The frames a passive request's samples start below (SampledRequest).
_ANCHOR_CODES = frozenset(
    {FastprofMiddleware.__call__.__code__, _SampledMiddleware.__call__.__code__}
)
