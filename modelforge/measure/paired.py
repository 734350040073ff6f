"""How many times faster one model is than another, with a confidence interval, from paired blocks of runs.

Two models run in alternating blocks (A×k, B×k, A×k, ...). Each pair of consecutive blocks saw the same
machine load, so the pair's ratio, median(A's block) / median(B's block), cancels what a neighbour process
does to both. The speed-up is the median of those ratios, and its interval is the distribution-free one for
a median (order statistics of the pair ratios, from the sign test): exact for any continuous distribution,
no resampling (the same numbers always give the same answer), and a pair that a busy neighbour hit hard on
one side moves it no more than any other pair above or below the median. Ratios are taken on a log scale,
where "A is 1.2x B" and "B is 1.2x A" are symmetric.

Pure: numbers in, interval out. The measuring loop is `evaluate.latency.paired_blocks`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Interval checks happen only at these pair counts (and at the end): each look at a growing sample is
# another chance to stop on noise, and looks spaced ~1.4x apart keep the extra error small.
FIRST_LOOK = 6  # the fewest pairs a 95% two-sided median interval can be built from (2 / 2**6 < 0.05)


@dataclass(frozen=True)
class RatioInterval:
    """`estimate`: median over pairs of first / second (> 1: the second model is faster); [`low`, `high`]:
    its interval at `confidence` ([0, inf] when there are too few pairs to build one)."""

    estimate: float
    low: float
    high: float
    pairs: int
    confidence: float

    def above(self, line: float) -> bool:
        """The whole interval is above `line`: the speed-up is significantly larger."""
        return self.low > line

    def below(self, line: float) -> bool:
        return self.high < line

    def straddles(self, line: float) -> bool:
        return not (self.above(line) or self.below(line))

    @property
    def bounded(self) -> bool:
        return self.low > 0 and math.isfinite(self.high)

    def record(self) -> dict:
        def num(value: float) -> float | None:
            return round(value, 3) if math.isfinite(value) else None

        return {
            "speedup": num(self.estimate),
            "interval": [num(self.low), num(self.high)] if self.bounded else [None, None],
            "confidence": self.confidence,
            "pairs": self.pairs,
        }

    def describe(self) -> str:
        if not self.bounded:
            return f"{self.estimate:.2f}x ({self.pairs} block pairs, too few for an interval)"
        return (
            f"{self.estimate:.2f}x ({self.confidence:.0%} interval {self.low:.2f}-{self.high:.2f}x, "
            f"{self.pairs} block pairs)"
        )


def block_medians(times: Sequence[float], per_block: int) -> list[float]:
    """Median of each whole block of `per_block` consecutive runs (a trailing partial block is dropped)."""
    return [float(np.median(times[i : i + per_block])) for i in range(0, len(times) - per_block + 1, per_block)]


def pair_log_ratios(first: Sequence[float], second: Sequence[float]) -> np.ndarray:
    """log(first[i] / second[i]) for each pair of block medians (the shorter list decides how many)."""
    n = min(len(first), len(second))
    a = np.asarray(first[:n], dtype=np.float64)
    b = np.asarray(second[:n], dtype=np.float64)
    if n and (np.any(a <= 0) or np.any(b <= 0)):
        raise ValueError("block medians must be positive times")
    return np.log(a) - np.log(b)


@lru_cache(maxsize=256)
def order_statistic_rank(n: int, confidence: float) -> int | None:
    """The 1-based rank k such that [x_(k), x_(n+1-k)] covers the median with at least `confidence`
    (the largest k with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2); None when n is too small."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    tail = (1.0 - confidence) / 2
    total = 2**n
    term, cumulative = 1, 0  # C(n, k) and 2**n * P(X <= k - 1), exact in integers
    k = 0
    while k < (n + 1) // 2:
        cumulative += term
        if cumulative / total > tail:
            break
        term = term * (n - k) // (k + 1)
        k += 1
    return k if k >= 1 else None


def fewest_pairs(confidence: float) -> int:
    """The fewest pairs from which an interval at `confidence` can be built (6 at 95%, 8 at 99%)."""
    n = 1
    while order_statistic_rank(n, confidence) is None:
        n += 1
    return n


def median_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """Distribution-free interval for the median of `values` (-inf, inf when too few values)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    k = order_statistic_rank(len(ordered), confidence)
    if k is None:
        return -math.inf, math.inf
    return float(ordered[k - 1]), float(ordered[len(ordered) - k])


def ratio_interval(first: Sequence[float], second: Sequence[float], confidence: float = 0.95) -> RatioInterval:
    """How many times faster the second model is: per-pair block medians in (seconds, same order), interval
    out."""
    logs = pair_log_ratios(first, second)
    if len(logs) == 0:
        return RatioInterval(math.nan, 0.0, math.inf, 0, confidence)
    low, high = median_interval(logs, confidence)
    return RatioInterval(float(np.exp(np.median(logs))), math.exp(low), math.exp(high), len(logs), confidence)


def is_look(pairs: int) -> bool:
    """Pair counts at which a sequential measurement checks its interval: 6, 8, 11, 15, 21, 29, ..."""
    look = FIRST_LOOK
    while look < pairs:
        look = max(look + 1, round(look * 1.4))
    return look == pairs
