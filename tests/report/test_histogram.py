from __future__ import annotations

from fastprof.load.histogram import Histogram
from fastprof.report.histogram import bins


def histogram(values: list[float]) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h


def test_every_request_lands_in_one_bar() -> None:
    values = [0.010 + i * 0.00005 for i in range(300)]
    out = bins(histogram(values).to_dict(), count=20)
    assert out is not None
    assert out["scale"] == "linear"
    assert len(out["counts"]) == 20 and len(out["edges_ms"]) == 21
    assert sum(out["counts"]) == out["count"] == 300
    assert out["edges_ms"][0] == 10.0
    assert abs(out["edges_ms"][-1] - 24.95) < 0.01
    # evenly spread values give evenly filled bars
    assert max(out["counts"]) - min(out["counts"]) <= 3


def test_long_tail_gets_a_log_axis() -> None:
    out = bins(histogram([0.001] * 50 + [0.5] * 5).to_dict())
    assert out is not None and out["scale"] == "log"
    edges = out["edges_ms"]
    assert edges[0] == 1.0 and abs(edges[-1] - 500.0) < 0.01
    assert abs(edges[1] / edges[0] - edges[-1] / edges[-2]) < 1e-2  # equal ratios
    assert out["counts"][0] == 50 and out["counts"][-1] == 5


def test_single_value() -> None:
    out = bins(histogram([0.010] * 7).to_dict())
    assert out is not None and sum(out["counts"]) == 7


def test_empty_or_foreign_histograms_give_none() -> None:
    assert bins(Histogram().to_dict()) is None
    bad = histogram([0.01]).to_dict()
    bad["sub_bits"] = 5
    assert bins(bad) is None
