"""Detectors by name: ``DETECTORS`` maps a finding kind to ``"module:attr"`` of its detector.

Adding a detector means adding a module here and a line to the registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from fastprof.detectors.base import Detector

DETECTORS: dict[str, str] = {
    "event_loop_blocking": "fastprof.detectors.event_loop_blocking:EventLoopBlockingDetector",
    "n_plus_one": "fastprof.detectors.n_plus_one:NPlusOneDetector",
    "duplicate_query": "fastprof.detectors.duplicate_query:DuplicateQueryDetector",
    "connection_per_request": (
        "fastprof.detectors.connection_per_request:ConnectionPerRequestDetector"
    ),
    "slow_serialization": "fastprof.detectors.slow_serialization:SlowSerializationDetector",
    "middleware_overhead": "fastprof.detectors.middleware_overhead:MiddlewareOverheadDetector",
    "threadpool_saturation": (
        "fastprof.detectors.threadpool_saturation:ThreadpoolSaturationDetector"
    ),
    "cache_opportunity": "fastprof.detectors.cache_opportunity:CacheOpportunityDetector",
    "pool_exhaustion": "fastprof.detectors.pool_exhaustion:PoolExhaustionDetector",
    "slow_query": "fastprof.detectors.slow_query:SlowQueryDetector",
}

__all__ = ["DETECTORS", "Detector", "detector_class", "make_detectors"]


def detector_class(spec: str | type[Detector]) -> type[Detector]:
    if isinstance(spec, type) and issubclass(spec, Detector):
        return spec
    target = DETECTORS.get(spec) if isinstance(spec, str) else None
    if target is None:
        raise ValueError(
            f"detector {spec!r} is not known; use one of {', '.join(sorted(DETECTORS))} "
            "or a Detector subclass"
        )
    module_name, _, attr = target.partition(":")
    cls: Any = getattr(importlib.import_module(module_name), attr)
    return cls  # type: ignore[no-any-return]


def make_detectors(
    specs: bool | Iterable[str | type[Detector] | Detector],
    options: dict[str, dict[str, Any]] | None = None,
) -> list[Detector]:
    """Detector instances for ``specs`` (True: every registered one; False: none)."""
    if specs is False:
        return []
    chosen: Iterable[str | type[Detector] | Detector] = (
        list(DETECTORS) if specs is True else specs
    )
    options = options or {}
    made: list[Detector] = []
    for spec in chosen:
        if isinstance(spec, Detector):
            made.append(spec)
            continue
        cls = detector_class(spec)
        made.append(cls(**options.get(cls.kind, {})))
    return made
