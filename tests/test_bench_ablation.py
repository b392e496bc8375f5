"""bench/ablation.py: each variant serves the app through the part of the passive path it names."""

from __future__ import annotations

import httpx
import pytest

from bench import ablation
from fastprof.backends.continuous import Sampler
from fastprof.middleware import FastprofMiddleware, _SampledMiddleware


def _middleware(app: object) -> FastprofMiddleware:
    layer = app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, FastprofMiddleware):
        layer = layer.app
    return layer


@pytest.mark.parametrize("name", list(ablation.PARTS))
async def test_each_variant_serves_through_its_part(name: str) -> None:
    sampler = Sampler.shared()
    app = ablation.build(name)
    middleware = _middleware(app)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            responses = [await client.get("/") for _ in range(3)]
        assert [r.json() for r in responses] == [{"message": "hello"}] * 3
        # The first request switched the middleware to the variant's class, as it switches a
        # real one to _SampledMiddleware: the later requests ran that class's path.
        assert type(middleware) is ablation.PARTS[name][0]
        assert isinstance(middleware, _SampledMiddleware)
        if name == "passive_1hz":
            assert sampler.interval == 1.0 and "_next_delay" not in vars(sampler)
        else:  # held off: the timer is armed an hour ahead
            assert sampler._next_delay() == ablation.HELD_OFF
    finally:
        middleware.close()
        vars(sampler).pop("_next_delay", None)  # the shared sampler's own method again


def test_the_real_path_is_the_one_measured() -> None:
    """passive_path stands for the real passive path: it must be the real class, not a copy."""
    assert ablation.PARTS["passive_path"][0] is _SampledMiddleware
    copies = [cls for cls, _ in ablation.PARTS.values() if cls is not _SampledMiddleware]
    assert all(cls.__call__ is not _SampledMiddleware.__call__ for cls in copies)
