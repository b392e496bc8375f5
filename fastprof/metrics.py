"""Prometheus metrics from the middleware (extra: ``pip install 'fastprof-asgi[metrics]'``).

``FastprofMiddleware(app, metrics=True)`` serves ``/metrics`` (``metrics_path``) in the
Prometheus text format, from its own registry unless you pass one:

=========================================== ===========================================
``fastprof_http_request_duration_seconds``  histogram by ``method``, ``route`` (template),
                                            ``status``
``fastprof_db_queries_per_request``         histogram by ``method``, ``route``
``fastprof_event_loop_blocked_seconds``     counter (``_total``) by ``method``, ``route``
``fastprof_findings``                       counter (``_total``) by ``kind``, ``severity``
=========================================== ===========================================

Names follow Prometheus conventions: base units (seconds), ``_total`` on counters (added by
prometheus_client), a ``fastprof_`` namespace. For OpenTelemetry, use the same hook points
the exporter uses: ``on_request=`` receives every :class:`~fastprof.record.RequestRecord` and
``on_finding=`` every :class:`~fastprof.findings.Finding` (see docs/metrics.md).
"""

from __future__ import annotations

from typing import Any

from fastprof.findings import Finding
from fastprof.record import RequestRecord

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
QUERY_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100)


class PrometheusMetrics:
    """The four metrics, fed by the middleware's ``on_request``/``on_finding`` hooks."""

    def __init__(self, registry: Any = None, namespace: str = "fastprof") -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportError(
                "metrics=True needs prometheus_client: pip install 'fastprof-asgi[metrics]'"
            ) from None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route template.",
            ["method", "route", "status"],
            namespace=namespace,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.queries = Histogram(
            "db_queries_per_request",
            "Database queries each request ran.",
            ["method", "route"],
            namespace=namespace,
            buckets=QUERY_BUCKETS,
            registry=self.registry,
        )
        self.blocked = Counter(
            "event_loop_blocked_seconds",
            "Seconds the event loop was stalled while a request of this route held it.",
            ["method", "route"],
            namespace=namespace,
            registry=self.registry,
        )
        self.findings = Counter(
            "findings",
            "Findings reported by fastprof's detectors.",
            ["kind", "severity"],
            namespace=namespace,
            registry=self.registry,
        )

    def on_request(self, record: RequestRecord) -> None:
        self.duration.labels(record.method, record.route, str(record.status)).observe(
            record.duration
        )
        self.queries.labels(record.method, record.route).observe(record.queries)
        if record.blocked:
            self.blocked.labels(record.method, record.route).inc(record.blocked)

    def on_finding(self, finding: Finding) -> None:
        self.findings.labels(finding.kind, finding.severity).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type of a scrape."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
