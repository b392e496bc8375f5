"""A latency histogram with log-linear buckets, in the manner of HdrHistogram.

Values are seconds, stored as whole nanoseconds. Below 256 ns every nanosecond has its own
bucket; above, each power of two is split into 128 equal buckets, so a bucket is at most 1/128
(0.78 %) of the values it holds wide. A percentile is reported as the middle of its bucket,
clamped to the exact minimum and maximum, so it is within 0.4 % of the exact nearest-rank
percentile for any value from 10 µs to 100 s and beyond. There is no upper limit (100 s falls
in bucket 3 898, an hour in bucket 4 561); counts live in a plain list indexed by bucket, so
recording costs a few integer operations.

Histograms merge (:meth:`Histogram.merge`) bucket by bucket, without loss, and serialise to a
small JSON-able dict (:meth:`Histogram.to_dict`, :meth:`Histogram.from_dict`) that keeps only
the buckets in use.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

#: Each power of two above ``2 ** (SUB_BITS + 1)`` ns is split into ``2 ** SUB_BITS`` buckets.
SUB_BITS = 7
_SUB_COUNT = 1 << SUB_BITS
_EXACT_BITS = SUB_BITS + 1  # values below 2**8 ns have one bucket per nanosecond


class HistogramDict(TypedDict):
    """The serialised form: ``counts`` holds ``[bucket, count]`` pairs of the buckets in use."""

    unit: str
    sub_bits: int
    count: int
    sum: float
    min: float | None
    max: float | None
    counts: list[list[int]]


class LatencySummary(TypedDict):
    """Milliseconds, as :meth:`Histogram.summary_ms` reports them."""

    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    mean: float | None


def bucket_of(nanoseconds: int) -> int:
    """The bucket that holds ``nanoseconds`` (a non-negative int)."""
    shift = nanoseconds.bit_length() - _EXACT_BITS
    if shift <= 0:
        return nanoseconds
    return (shift << SUB_BITS) + (nanoseconds >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``[low, high)`` in nanoseconds of the values bucket ``index`` holds."""
    if index < 2 * _SUB_COUNT:
        return index, index + 1
    shift = (index >> SUB_BITS) - 1
    sub = index - (shift << SUB_BITS)
    return sub << shift, (sub + 1) << shift


class Histogram:
    """Counts of latencies (seconds) in log-linear buckets; see the module docstring."""

    __slots__ = ("_counts", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self._counts: list[int] = []
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def record(self, seconds: float) -> None:
        """Add one value (negative values count as zero)."""
        if seconds < 0.0:
            seconds = 0.0
        ns = int(seconds * 1e9)
        shift = ns.bit_length() - _EXACT_BITS
        index = ns if shift <= 0 else (shift << SUB_BITS) + (ns >> shift)
        counts = self._counts
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
        self.count += 1
        self.sum += seconds
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        """Add every value of ``other`` to this histogram."""
        theirs = other._counts
        mine = self._counts
        if len(theirs) > len(mine):
            mine.extend([0] * (len(theirs) - len(mine)))
        for index, n in enumerate(theirs):
            if n:
                mine[index] += n
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float | None:
        """The nearest-rank ``p``-th percentile (0-100) in seconds; None when empty."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile must be within 0-100, got {p!r}")
        if self.count == 0:
            return None
        rank = max(1, math.ceil(p / 100.0 * self.count))
        if rank == self.count:
            return self.max  # exact, like the minimum below
        if rank == 1:
            return self.min
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                low, high = bucket_bounds(index)
                middle = (low + high - 1) / 2e9 if high - low > 1 else low / 1e9
                return min(max(middle, self.min), self.max)
        return self.max  # unreachable while counts and count agree

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def summary_ms(self) -> LatencySummary:
        """p50, p90, p99, max and mean in milliseconds (None when empty)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1e3, 4)

        return {
            "p50": ms(self.percentile(50)),
            "p90": ms(self.percentile(90)),
            "p99": ms(self.percentile(99)),
            "max": ms(self.max if self.count else None),
            "mean": ms(self.mean),
        }

    def to_dict(self) -> HistogramDict:
        return {
            "unit": "ns",
            "sub_bits": SUB_BITS,
            "count": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "counts": [[index, n] for index, n in enumerate(self._counts) if n],
        }

    @classmethod
    def from_dict(cls, data: HistogramDict | dict[str, Any]) -> Histogram:
        """The inverse of :meth:`to_dict`; ``ValueError`` on a dict it did not write."""
        if data.get("unit") != "ns" or data.get("sub_bits") != SUB_BITS:
            raise ValueError(
                f"histogram dict with unit={data.get('unit')!r}, sub_bits={data.get('sub_bits')!r}"
                f" (expected 'ns', {SUB_BITS})"
            )
        histogram = cls()
        try:
            pairs = [(int(index), int(n)) for index, n in data["counts"]]
            count = int(data["count"])
            total = float(data["sum"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed histogram dict: {exc}") from None
        if any(index < 0 or n < 0 for index, n in pairs) or sum(n for _, n in pairs) != count:
            raise ValueError("malformed histogram dict: counts do not add up to count")
        if pairs:
            histogram._counts = [0] * (max(index for index, _ in pairs) + 1)
            for index, n in pairs:
                histogram._counts[index] += n
        histogram.count = count
        histogram.sum = total
        if count:
            histogram.min = float(data["min"] if data["min"] is not None else 0.0)
            histogram.max = float(data["max"] if data["max"] is not None else 0.0)
        return histogram

    def __repr__(self) -> str:
        return f"<Histogram count={self.count} p50={self.percentile(50) if self.count else None}>"
