"""Histogram: precision against exact percentiles, merging, serialisation."""

from __future__ import annotations

import json
import math
import random

import pytest

from fastprof.load.histogram import Histogram, bucket_bounds, bucket_of


def exact(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_within_one_percent_from_10us_to_100s(seed: int) -> None:
    rng = random.Random(seed)
    # Log-uniform over seven decades, so every scale from 10 µs to 100 s is exercised.
    values = [10 ** rng.uniform(-5, 2) for _ in range(20_000)]
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    for p in (0, 1, 10, 25, 50, 75, 90, 99, 99.9, 100):
        got = histogram.percentile(p)
        assert got is not None
        assert got == pytest.approx(exact(values, p), rel=0.01), p
    assert histogram.count == len(values)
    assert histogram.min == min(values) and histogram.max == max(values)
    assert histogram.mean == pytest.approx(sum(values) / len(values))


def test_percentiles_of_a_narrow_latency_distribution() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(0.003), 0.4) for _ in range(10_000)]
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    for p in (50, 90, 99, 99.99):
        assert histogram.percentile(p) == pytest.approx(exact(values, p), rel=0.01)


def test_buckets_are_contiguous_and_narrow() -> None:
    previous_high = 0
    for index in range(5000):
        low, high = bucket_bounds(index)
        assert low == previous_high  # no gap, no overlap
        assert bucket_of(low) == index and bucket_of(high - 1) == index
        if low >= 256:
            assert (high - low) / low <= 1 / 128
        previous_high = high


def test_merge_equals_recording_everything_in_one() -> None:
    rng = random.Random(3)
    a, b, both = Histogram(), Histogram(), Histogram()
    for i in range(5000):
        value = rng.expovariate(100)
        (a if i % 3 else b).record(value)
        both.record(value)
    b.record(250.0)  # far beyond the other's buckets
    both.record(250.0)
    a.merge(b)
    merged, whole = a.to_dict(), both.to_dict()
    assert merged["sum"] == pytest.approx(whole["sum"])  # float sums differ in the last bits
    assert {**merged, "sum": 0} == {**whole, "sum": 0}
    assert a.percentile(100) == 250.0


def test_dict_round_trip_through_json() -> None:
    histogram = Histogram()
    for value in (0.0, 1e-6, 0.5, 0.5, 3.0):
        histogram.record(value)
    data = json.loads(json.dumps(histogram.to_dict()))
    copy = Histogram.from_dict(data)
    assert copy.to_dict() == histogram.to_dict()
    assert copy.percentile(50) == histogram.percentile(50)
    assert len(data["counts"]) == 4  # only the buckets in use


def test_empty_histogram() -> None:
    histogram = Histogram()
    assert histogram.percentile(50) is None
    assert histogram.mean is None
    assert histogram.summary_ms() == {"p50": None, "p90": None, "p99": None, "max": None,
                                      "mean": None}  # fmt: skip
    assert Histogram.from_dict(histogram.to_dict()).count == 0


def test_negative_values_count_as_zero_and_bad_input_is_refused() -> None:
    histogram = Histogram()
    histogram.record(-1.0)
    assert histogram.percentile(50) == 0.0
    with pytest.raises(ValueError, match="within 0-100"):
        histogram.percentile(101)
    good = histogram.to_dict()
    with pytest.raises(ValueError, match="unit"):
        Histogram.from_dict({**good, "unit": "ms"})
    with pytest.raises(ValueError, match="add up"):
        Histogram.from_dict({**good, "count": 5})
    with pytest.raises(ValueError, match="malformed"):
        Histogram.from_dict({**good, "counts": "nope"})
