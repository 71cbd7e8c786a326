"""A metric's samples over one period, in bounded space: count, sum, minimum, maximum, and a log-bucketed
histogram for percentiles (as DDSketch: a value's bucket is its logarithm base (1+a)/(1-a), so any
percentile is within a relative error `a` of a true sample's value). Buckets of two periods add up, so
minutes merge into the periods a query asks for, exactly as the minutes would have on their own."""
from __future__ import annotations

import math
from array import array

ACCURACY = 0.01  # relative error of percentiles
_GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
MAX_BUCKETS = 2048  # past this the lowest buckets fold together (only values spanning ~1e17 get there)


class Dist:
    __slots__ = ("buckets", "count", "maximum", "minimum", "total", "zeros")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.zeros = 0  # samples <= 0 (the metrics here are never negative: counts, latencies, percentages)
        self.buckets: dict[int, int] = {}

    def add(self, value: float, times: int = 1) -> None:
        self.count += times
        self.total += value * times
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        if value <= 0:
            self.zeros += times
            return
        index = math.ceil(math.log(value) / _LOG_GAMMA)
        self.buckets[index] = self.buckets.get(index, 0) + times
        if len(self.buckets) > MAX_BUCKETS:
            self._fold()

    def merge(self, other: Dist) -> None:
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.zeros += other.zeros
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        if len(self.buckets) > MAX_BUCKETS:
            self._fold()

    def quantile(self, q: float) -> float | None:
        """The nearest-rank percentile: the smallest sample value with at least a share `q` (0..1) of the samples
        at or below it, within ACCURACY; clamped to the samples' minimum and maximum."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count - 1e-9))
        seen = self.zeros
        if rank <= seen:
            return max(self.minimum, 0.0)
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if rank <= seen:
                value = 2 * _GAMMA ** index / (_GAMMA + 1)  # the bucket's middle, in relative terms
                return min(max(value, self.minimum), self.maximum)
        return self.maximum

    def _fold(self) -> None:
        ordered = sorted(self.buckets)
        low = ordered[len(ordered) - MAX_BUCKETS]
        folded = sum(self.buckets.pop(i) for i in ordered[:len(ordered) - MAX_BUCKETS + 1])
        self.buckets[low] = folded

    # -- storage: count, sum, min, max as columns; the histogram as bytes ------------------------------
    def histogram(self) -> bytes:
        flat = array("q", [self.zeros])
        for index, n in self.buckets.items():
            flat.append(index)
            flat.append(n)
        return flat.tobytes()

    @classmethod
    def restore(cls, count: int, total: float, minimum: float, maximum: float, histogram: bytes) -> Dist:
        dist = cls()
        dist.count, dist.total, dist.minimum, dist.maximum = count, total, minimum, maximum
        flat = array("q")
        flat.frombytes(histogram)
        dist.zeros = flat[0] if flat else 0
        dist.buckets = {flat[i]: flat[i + 1] for i in range(1, len(flat) - 1, 2)}
        return dist
