from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator

import pytest

from fastprof.advice import (
    GUIDES,
    REGISTRY,
    Advice,
    Context,
    advice,
    choose,
    fastapi_serialises_with_pydantic,
    installed,
    parse_version,
    register,
)
from fastprof.detectors import DETECTORS


@pytest.fixture
def scratch_kind() -> Iterator[str]:
    yield "scratch_kind"
    REGISTRY.pop("scratch_kind", None)


def test_parse_version() -> None:
    assert parse_version("0.115.2") == (0, 115, 2)
    assert parse_version("0.130.0rc1") == (0, 130, 0)
    assert parse_version("2.14.4+local.7") == (2, 14, 4)
    assert parse_version("4.2") < parse_version("4.10")


def test_context_compares_versions_and_overrides_them() -> None:
    context = Context({}, {"fastapi": "0.129.9", "redis": None})
    assert context.below("fastapi", "0.130") and not context.at_least("fastapi", "0.130")
    assert not context.has("redis") and not context.below("redis", "99")
    assert context.version("pydantic") == importlib.metadata.version("pydantic")


def test_installed_is_the_distribution_version() -> None:
    assert installed("fastapi") == importlib.metadata.version("fastapi")
    assert installed("surely-not-installed-dist") is None


def test_first_matching_entry_wins_and_sources_are_cited(scratch_kind: str) -> None:
    register(
        Advice(
            scratch_kind,
            "old {n}",
            ("guide 000: JSON response classes comparison",),
            when=lambda c: c.below("fastapi", "0.130"),
        ),
        Advice(scratch_kind, "new {n:.1f} ms", ("guide 001", "measured")),
    )
    old = advice(scratch_kind, versions={"fastapi": "0.100.0"}, n=3)
    assert old.startswith("old 3\nSource: guide 000 (FastAPI performance tuning")
    assert old.endswith(": JSON response classes comparison).")
    new = advice(scratch_kind, versions={"fastapi": "0.131.0"}, n=2.25)
    assert new == (
        "new 2.2 ms\nSource: guide 001 (FastAPI Performance Tuning); "
        "fastprof's measurement (see the evidence)."
    )
    assert choose(scratch_kind, versions={"fastapi": None}, n=1).text == "new {n:.1f} ms"


def test_a_fact_the_detector_did_not_give_prints_as_a_question_mark(scratch_kind: str) -> None:
    register(Advice(scratch_kind, "took {ms:.1f} ms", ("measured",)))
    assert advice(scratch_kind).startswith("took ? ms")


def test_unknown_kind_and_no_applicable_entry(scratch_kind: str) -> None:
    with pytest.raises(KeyError, match="no advice registered for 'nope'"):
        advice("nope")
    register(Advice(scratch_kind, "x", ("measured",), when=lambda c: False))
    with pytest.raises(LookupError, match="no advice for 'scratch_kind' applies"):
        advice(scratch_kind)


def test_every_registered_detector_has_advice_for_any_facts() -> None:
    # The last entry of each kind has no condition: some advice always applies.
    for kind in DETECTORS:
        text = advice(kind)
        assert "\nSource: " in text, kind


def test_every_citation_names_a_guide_or_a_document() -> None:
    for kind, entries in REGISTRY.items():
        for entry in entries:
            assert entry.sources, (kind, entry.text[:40])
            for source in entry.sources:
                number = re.match(r"guide (\d{3})", source)
                assert number is None or number.group(1) in GUIDES, source


@pytest.mark.parametrize(
    ("version", "expected", "unexpected"),
    [
        ("0.165.0", "Declare the endpoint's return type", "Return `ORJSONResponse(data)`"),
        ("0.130.0", "Declare the endpoint's return type", "Return `ORJSONResponse(data)`"),
        ("0.129.2", "Return `ORJSONResponse(data)`", "Declare the endpoint's return type"),
        (None, "Encode with orjson", "ORJSONResponse"),
    ],
)
def test_slow_serialization_advice_follows_the_installed_fastapi(
    version: str | None, expected: str, unexpected: str
) -> None:
    text = advice(
        "slow_serialization",
        versions={"fastapi": version},
        via="fastapi",
        fastapi=version,
        encoder="jsonable_encoder",
        encode_ms=40.0,
        suggested="orjson",
        suggested_ms=2.0,
    )
    assert expected in text and unexpected not in text
    assert "40.0 ms" in text and "2.0 ms" in text
    assert fastapi_serialises_with_pydantic({"fastapi": version}) is (
        version is not None and parse_version(version) >= (0, 130)
    )


def test_event_loop_blocking_advice_points_redis_to_redis_asyncio() -> None:
    redis = advice(
        "event_loop_blocking",
        versions={"redis": "5.0.1"},
        cause="wait",
        call="redis.get",
        blocked_ms=120.0,
        library="redis",
    )
    assert "redis.asyncio" in redis and "aioredis was merged" in redis
    other = advice("event_loop_blocking", cause="wait", call="requests.get", blocked_ms=120.0)
    assert "httpx.AsyncClient" in other
    cpu = advice("event_loop_blocking", cause="cpu", call="hashlib.pbkdf2_hmac", blocked_ms=300)
    assert "process pool" in cpu


def test_connection_advice_uses_lifespan_unless_fastapi_predates_it() -> None:
    current = advice("connection_per_request", versions={"fastapi": "0.115.0"}, driver="asyncpg")
    assert "lifespan" in current and "on_event" not in current
    old = advice(
        "connection_per_request", versions={"fastapi": "0.90.0"}, driver="asyncpg", fastapi="0.90.0"
    )
    assert "on_event" in old and "FastAPI 0.90.0 has no lifespan" in old
