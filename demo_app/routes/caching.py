"""An expensive read recomputed on every request vs cached (guides 001, 003, 004).

The report (``demo_app.reports``) costs a 20 ms query. The twins keep it for 60 s: in this
process (``cachetools.TTLCache``, as guide 003 shows) or shared between workers (Redis, as 001
and 004 show, when ``REDIS_URL`` is set; in this process otherwise). ``X-Cache`` says whether a
response was a hit, ``X-Cache-Backend`` where it came from.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from demo_app.reports import CACHED_REPORT_SECONDS, report_async
from demo_app.resources import Resources, ResourcesDep
from demo_app.schemas import Report
from demo_app.seed import DATA_VERSION

router = APIRouter(tags=["caching"])

CACHE_KEY = f"demo-app:v{DATA_VERSION}:top-authors"


async def build_report(resources: Resources) -> Report:
    db = resources.db
    async with db.engine.connect() as conn:
        return await report_async(conn, db, CACHED_REPORT_SECONDS)


@router.get("/pitfall/caching/report")
async def report_uncached(resources: ResourcesDep) -> Report:
    return await build_report(resources)


@router.get("/fixed/caching/report")
async def report_cached_in_process(response: Response, resources: ResourcesDep) -> Report:
    cache = resources.memory_cache
    hit = CACHE_KEY in cache
    if not hit:
        cache[CACHE_KEY] = await build_report(resources)
    response.headers["X-Cache"] = "hit" if hit else "miss"
    response.headers["X-Cache-Backend"] = "memory"
    report: Report = cache[CACHE_KEY]
    return report


@router.get("/fixed/caching/report-shared")
async def report_cached_shared(response: Response, resources: ResourcesDep) -> Report:
    cache = resources.shared_cache
    cached = await cache.get(CACHE_KEY)
    response.headers["X-Cache"] = "hit" if cached is not None else "miss"
    response.headers["X-Cache-Backend"] = cache.backend
    if cached is not None:
        return Report.model_validate_json(cached)
    report = await build_report(resources)
    await cache.set(CACHE_KEY, report.model_dump_json().encode())
    return report
