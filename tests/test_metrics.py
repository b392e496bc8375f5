from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from fastprof import ConfigError, FastprofMiddleware
from fastprof.findings import Finding
from fastprof.metrics import PrometheusMetrics


def build() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/fail")
    async def fail() -> None:
        from fastapi import HTTPException

        raise HTTPException(500)

    return app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_endpoint_is_scraped_and_parsed() -> None:
    mw = FastprofMiddleware(build(), metrics=True)
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await asyncio.gather(*[client.get(f"/items/{i}") for i in range(3)])
        await client.get("/fail")
        mw.store.add_findings([Finding("n_plus_one", "high", "x", route="GET /items/{item_id}")])
        scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    found = samples(scrape.text)
    route = (("method", "GET"), ("route", "/items/{item_id}"), ("status", "200"))
    assert found[("fastprof_http_request_duration_seconds_count", route)] == 3
    failed = (("method", "GET"), ("route", "/fail"), ("status", "500"))
    assert found[("fastprof_http_request_duration_seconds_count", failed)] == 1
    queries = (("method", "GET"), ("route", "/items/{item_id}"))
    assert found[("fastprof_db_queries_per_request_count", queries)] == 3
    finding = (("kind", "n_plus_one"), ("severity", "high"))
    assert found[("fastprof_findings_total", finding)] == 1
    # the scrape itself is not a request of the app
    assert not any(dict(labels).get("route") == "/metrics" for _, labels in found)
    assert mw.store.requests[-1].path == "/fail"


async def test_blocked_seconds_and_own_registry() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    mw = FastprofMiddleware(build(), metrics=metrics, metrics_path=None)
    from fastprof.record import RequestRecord

    metrics.on_request(RequestRecord("GET", "/x", "/x", 200, 0.2, 10, 0.0, queries=4, blocked=0.15))
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 404  # not served
    value = registry.get_sample_value(
        "fastprof_event_loop_blocked_seconds_total", {"method": "GET", "route": "/x"}
    )
    assert value == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metrics": "yes"}, "metrics='yes' is not valid"),
        ({"metrics": True, "metrics_path": "metrics"}, "metrics_path='metrics' is not valid"),
    ],
)
def test_bad_metrics_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FastprofMiddleware(build(), **options)
