"""A route's latency histogram, re-binned for drawing.

The scan keeps HdrHistogram-style buckets (:mod:`fastprof.load.histogram`): thousands of them,
0.8 % wide. The report draws ``BINS`` bars between the fastest and the slowest request, on a
logarithmic axis when they are more than ``LOG_RATIO`` apart (a long tail would squash a linear
one into a single bar), else on a linear one.
"""

from __future__ import annotations

import math
from typing import Literal, TypedDict

from fastprof.load.histogram import SUB_BITS, HistogramDict, bucket_bounds

BINS = 40
LOG_RATIO = 8.0


class HistogramBins(TypedDict):
    """``counts[i]`` requests took between ``edges_ms[i]`` and ``edges_ms[i + 1]``."""

    scale: Literal["linear", "log"]
    edges_ms: list[float]
    counts: list[int]
    count: int


def bins(histogram: HistogramDict, count: int = BINS) -> HistogramBins | None:
    """The histogram in ``count`` bars; None when it is empty or not in the expected form."""
    if histogram.get("sub_bits") != SUB_BITS or histogram.get("unit") != "ns":
        return None
    low_s, high_s = histogram.get("min"), histogram.get("max")
    if not histogram.get("count") or low_s is None or high_s is None:
        return None
    low, high = low_s * 1000, high_s * 1000
    if high <= low:
        high = low * 1.01 + 1e-3
    log = low > 0 and high / low > LOG_RATIO
    scale: Literal["linear", "log"] = "log" if log else "linear"
    if log:
        a, b = math.log(low), math.log(high)
        edges = [math.exp(a + (b - a) * i / count) for i in range(count + 1)]
    else:
        edges = [low + (high - low) * i / count for i in range(count + 1)]
    counts = [0] * count
    for bucket, n in histogram["counts"]:
        lo_ns, hi_ns = bucket_bounds(bucket)
        value = min(max((lo_ns + hi_ns) / 2e6, low), high)
        if log:
            at = int((math.log(value) - a) / (b - a) * count)
        else:
            at = int((value - low) / (high - low) * count)
        counts[min(max(at, 0), count - 1)] += n
    return {
        "scale": scale,
        "edges_ms": [round(e, 4) for e in edges],
        "counts": counts,
        "count": sum(counts),
    }
