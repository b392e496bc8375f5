"""Score every detector on the labelled corpus (tests/corpus): precision, recall, location."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.corpus as corpus
from fastprof import FastprofMiddleware
from fastprof.findings import Finding
from tests.conftest import require_service

BAR = 0.95
MODULES = sorted(
    name
    for _, name, _ in pkgutil.iter_modules([str(Path(corpus.__file__).parent)])
    if not name.startswith("_")
)


async def run_module(name: str) -> list[tuple[corpus.Case, list[Finding], str]]:
    module: Any = importlib.import_module(f"tests.corpus.{name}")
    service = getattr(module, "SERVICE", None)
    if service is not None:
        require_service(*service)
    app = module.build()
    mw = FastprofMiddleware(app, detect=True, **getattr(module, "OPTIONS", {}))
    results = []
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=mw)
            async with httpx.AsyncClient(transport=transport, base_url="http://corpus") as client:
                for case in module.CASES:
                    before = len(mw.store.findings)
                    for start in range(0, case.repeat, case.concurrency):
                        batch = min(case.concurrency, case.repeat - start)
                        responses = await asyncio.gather(
                            *[
                                client.request(case.method, case.path, json=case.json)
                                for _ in range(batch)
                            ]
                        )
                        for response in responses:
                            assert response.status_code < 500, (
                                f"{name} {case.path}: {response.text}"
                            )
                    await asyncio.sleep(0.05)  # let a watchdog finish reporting
                    new = list(mw.store.findings)[before:]
                    results.append((case, [f for f in new if f.route is not None], name))
    finally:
        mw.close()
    # Findings about the whole app (route None, e.g. middleware_overhead) come when the
    # detectors start, whichever case that is: score them once per module, against APP_KINDS.
    app_case = corpus.Case("<app>", frozenset(getattr(module, "APP_KINDS", ())))
    results.append((app_case, [f for f in mw.store.findings if f.route is None], name))
    return results


@pytest.fixture(scope="module")
def scored() -> list[tuple[corpus.Case, list[Finding], str]]:
    results = []
    for name in MODULES:
        results.extend(asyncio.run(run_module(name)))
    return results


def test_corpus_has_enough_cases(scored: list[Any]) -> None:
    assert len(scored) >= 40, f"the corpus has {len(scored)} endpoints; the bar is 40"


def test_precision_recall_per_kind(scored: list[tuple[corpus.Case, list[Finding], str]]) -> None:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    located: Counter[str] = Counter()
    classified: Counter[str] = Counter()
    problems = []
    for case, findings, module_name in scored:
        module = importlib.import_module(f"tests.corpus.{module_name}")
        lines = corpus.expected_lines(module)
        reported = {f.kind for f in findings}
        scored_kinds = (reported | case.kinds) - case.ignore
        for kind in scored_kinds:
            if kind in case.kinds and kind in reported:
                tp[kind] += 1
                hits = [f for f in findings if f.kind == kind]
                if any(f.location and f.location.line in lines.get(kind, []) for f in hits):
                    located[kind] += 1
                else:
                    where = [str(f.location) for f in hits]
                    problems.append(f"{module_name} {case.path}: {kind} at {where}")
                if kind == "event_loop_blocking" and case.blocking:
                    if any(f.evidence.get("cause") == case.blocking for f in hits):
                        classified[kind] += 1
                    else:
                        got = [f.evidence.get("cause") for f in hits]
                        problems.append(
                            f"{module_name} {case.path}: cause {got} != {case.blocking}"
                        )
            elif kind in case.kinds:
                fn[kind] += 1
                problems.append(f"{module_name} {case.path}: missed {kind}")
            else:
                fp[kind] += 1
                problems.append(f"{module_name} {case.path}: false {kind}")
    report = []
    failed = []
    for kind in sorted(set(tp) | set(fp) | set(fn)):
        precision = tp[kind] / ((tp[kind] + fp[kind]) or 1)
        recall = tp[kind] / ((tp[kind] + fn[kind]) or 1)
        location = located[kind] / (tp[kind] or 1)
        report.append(
            f"{kind:24} precision {precision:.2f} recall {recall:.2f} "
            f"location {location:.2f} (tp {tp[kind]} fp {fp[kind]} fn {fn[kind]})"
        )
        if precision < BAR or recall < BAR or location < 0.9:
            failed.append(kind)
    blocking_hits = tp["event_loop_blocking"]
    if blocking_hits:
        share = classified["event_loop_blocking"] / blocking_hits
        report.append(f"event_loop_blocking cpu-vs-wait right in {share:.2f} of hits")
        if share < 0.9:
            failed.append("event_loop_blocking classification")
    print("\n".join(report))
    assert not failed, "\n".join([*report, "problems:", *problems])


def test_negatives_report_nothing(scored: list[tuple[corpus.Case, list[Finding], str]]) -> None:
    noisy = [
        f"{name} {case.path}: {[f.kind for f in findings]}"
        for case, findings, name in scored
        if not case.kinds and [f for f in findings if f.kind not in case.ignore]
    ]
    assert not noisy
