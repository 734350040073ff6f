"""Latency of two models measured side by side, interleaved in blocks, on the same input.

Runs alternate in blocks (A×k, B×k, A×k, ...) so slow drifts of a shared, noisy machine hit both models
alike; the first runs of each block are dropped because the other model has just evicted the caches
and its idle worker threads may still be spinning.

A measurement stops when it is stable (after `min_runs`, the p50 of the last half of each model's runs is
within `tolerance` of the p50 of all its runs), when its time budget ends, or at MAX_RUNS runs per model.
The kept per-run times are returned so reports can draw distributions; statistics come from them alone.

`paired_blocks` answers a yes/no question instead (is B faster than A? by 10%?): it keeps measuring
block pairs until the speed-up's confidence interval (`evaluate.paired`) answers it or its time is up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from modelforge.measure.paired import FIRST_LOOK, RatioInterval, fewest_pairs, is_look, ratio_interval

BLOCK = 8
DROPPED_PER_BLOCK = 2
STABLE_WITHIN = 0.02
MAX_RUNS = 10_000  # kept runs per model: beyond this the p50 is precise enough, and checks stay cheap
MAX_STORED_SAMPLES = 1000  # per model and batch size in report.json
MAX_PAIRS = 2000  # block pairs of one paired comparison: a sub-millisecond model's interval is tight long before


@dataclass(frozen=True)
class LatencyStats:
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    throughput_per_s: float  # samples per second at the measured batch size
    # 95% upper confidence bounds of the p50 and p99 (`quantile_upper_bound`): what an SLO is judged on.
    p50_upper_ms: float | None = None
    p99_upper_ms: float | None = None

    @classmethod
    def from_seconds(cls, seconds: list[float], batch_size: int) -> LatencyStats:
        ms = np.asarray(seconds) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            runs=len(ms),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            mean_ms=float(ms.mean()),
            std_ms=float(ms.std()),
            min_ms=float(ms.min()),
            throughput_per_s=float(batch_size * 1e3 / p50),
            p50_upper_ms=quantile_upper_bound(ms, 0.50),
            p99_upper_ms=quantile_upper_bound(ms, 0.99),
        )


UPPER_BOUND_CONFIDENCE = 0.95


def quantile_upper_bound(values, q: float, confidence: float = UPPER_BOUND_CONFIDENCE) -> float:
    """A distribution-free upper confidence bound of the q-quantile: the k-th smallest value, k the least with
    P(Binomial(n, q) < k) >= confidence (at least that many of n runs fall below the true quantile only with
    probability under 1 - confidence). A p99 measured just under an SLO is a coin flip between runs; its bound
    under the SLO is a claim that holds. With too few runs for the bound (under 299 for a p99), the slowest run.

    Runs on a shared machine are not independent draws, so the bound is a floor on the uncertainty, not its
    whole: it is still far better than judging on the point estimate."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    if n == 0:
        return float("nan")
    k = np.arange(n + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k])
        + k * math.log(q)
        + (n - k) * math.log1p(-q)
    )
    cdf = np.cumsum(np.exp(log_pmf - log_pmf.max())) * math.exp(log_pmf.max())  # P(Binomial <= j)
    # k-th smallest (1-based) needs P(Binomial <= k - 1) >= confidence.
    reached = np.nonzero(cdf >= confidence)[0]
    index = int(reached[0]) if reached.size else n  # 0-based index k - 1 of the k-th smallest
    return float(ordered[min(index, n - 1)])


def p50_is_stable(times: Sequence[float], tolerance: float = STABLE_WITHIN) -> bool:
    """The p50 of the last half of the runs is within `tolerance` (relative) of the p50 of all runs."""
    if len(times) < 2:
        return False
    p50_all = float(np.median(times))
    p50_last = float(np.median(times[len(times) // 2 :]))
    return abs(p50_last - p50_all) <= tolerance * p50_all


@dataclass(frozen=True)
class InterleavedTimings:
    """Kept per-run times (seconds, in run order) of each model, and why measuring stopped."""

    seconds: tuple[tuple[float, ...], ...]
    stopped: str  # "stable" | "time budget" | "max runs"
    elapsed_s: float

    def stats(self, batch_size: int) -> list[LatencyStats]:
        return [LatencyStats.from_seconds(list(times), batch_size) for times in self.seconds]

    def samples_ms(self, limit: int = MAX_STORED_SAMPLES) -> list[list[float]]:
        """Each model's kept runs in ms, thinned evenly (run order kept) to at most `limit` values."""
        return [thin([t * 1e3 for t in times], limit) for times in self.seconds]


def thin(values: list[float], limit: int = MAX_STORED_SAMPLES) -> list[float]:
    if len(values) <= limit:
        return values
    indices = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [values[i] for i in indices]


def interleaved_runs(
    runs: Sequence[Callable[[], object]],
    *,
    warmup: int,
    min_runs: int,
    max_seconds: float,
    tolerance: float = STABLE_WITHIN,
    min_seconds: float = 0.0,
    advance: Callable[[int], None] = lambda _: None,
    clock: Callable[[], float] = time.perf_counter,
    max_runs: int = MAX_RUNS,
) -> InterleavedTimings:
    """Time each callable in turn, a block at a time, until every one has `min_runs` kept runs and a stable
    p50 and `min_seconds` have passed (a few dozen runs of a sub-millisecond model are a few milliseconds: one
    scheduler hiccup decides their p50), or `max_seconds` have passed (at least one block of each is always
    kept)."""
    for _ in range(warmup):
        for fn in runs:
            fn()
    kept: list[list[float]] = [[] for _ in runs]
    started = clock()
    deadline = started + max_seconds
    while True:
        for fn, times in zip(runs, kept, strict=True):
            for i in range(BLOCK):
                start = clock()
                fn()
                elapsed = clock() - start
                if i >= DROPPED_PER_BLOCK:
                    times.append(elapsed)
        advance(BLOCK - DROPPED_PER_BLOCK)
        enough = len(kept[0]) >= min_runs and clock() - started >= min(min_seconds, max_seconds)
        if enough and all(p50_is_stable(times, tolerance) for times in kept):
            stopped = "stable"
            break
        if clock() >= deadline:
            stopped = "time budget"
            break
        if len(kept[0]) >= max_runs:
            stopped = "max runs"
            break
    return InterleavedTimings(tuple(tuple(times) for times in kept), stopped, clock() - started)


def interleaved_latency(
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    *,
    batch_size: int,
    warmup: int,
    min_runs: int,
    max_seconds: float,
    advance: Callable[[int], None] = lambda _: None,
) -> tuple[LatencyStats, LatencyStats]:
    """Two models side by side: see `interleaved_runs`."""
    timings = interleaved_runs(
        (run_a, run_b), warmup=warmup, min_runs=min_runs, max_seconds=max_seconds, advance=advance
    )
    stats_a, stats_b = timings.stats(batch_size)
    return stats_a, stats_b


@dataclass(frozen=True)
class PairedTimings:
    """Per-block medians (seconds) of two models measured in alternating blocks, the speed-up of the second
    over the first with its interval, and why measuring stopped."""

    first: tuple[float, ...]
    second: tuple[float, ...]
    interval: RatioInterval
    stopped: str  # "decided" | "time allowance" | "max pairs"
    elapsed_s: float


def paired_blocks(
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    *,
    decided: Callable[[RatioInterval], bool],
    max_seconds: float,
    confidence: float = 0.95,
    min_pairs: int = 0,
    warmup: int = 3,
    max_pairs: int = MAX_PAIRS,
    clock: Callable[[], float] = time.perf_counter,
) -> PairedTimings:
    """A block of `run_a`, a block of `run_b`, again, until `decided(interval)` says the interval answers the
    question (checked at `paired.is_look` pair counts), or `max_seconds` are up (and at least `min_pairs`
    pairs were measured), or `max_pairs`.

    At least enough pairs for an interval at `confidence` are always measured (`paired.fewest_pairs`), however
    long they take. The first runs of each block are dropped (caches just evicted by the other model)."""
    for _ in range(warmup):
        run_a()
        run_b()
    medians: tuple[list[float], list[float]] = ([], [])
    needed = max(FIRST_LOOK, fewest_pairs(confidence))
    started = clock()
    while True:
        for fn, blocks in zip((run_a, run_b), medians, strict=True):
            times = []
            for i in range(BLOCK):
                start = clock()
                fn()
                if i >= DROPPED_PER_BLOCK:
                    times.append(clock() - start)
            blocks.append(float(np.median(times)))
        pairs = len(medians[0])
        if pairs < needed:
            continue
        out_of_time = clock() - started >= max_seconds and pairs >= min_pairs
        if is_look(pairs) or out_of_time or pairs >= max_pairs:
            interval = ratio_interval(*medians, confidence=confidence)
            if decided(interval):
                stopped = "decided"
            elif out_of_time:
                stopped = "time allowance"
            elif pairs >= max_pairs:
                stopped = "max pairs"
            else:
                continue
            return PairedTimings(tuple(medians[0]), tuple(medians[1]), interval, stopped, clock() - started)
