"""Latency of two models measured side by side, interleaved in blocks, on the same input.

Runs alternate in blocks (A×k, B×k, A×k, ...) so slow drifts of a shared, noisy machine hit both models
alike; the first runs of each block are dropped because the other model has just evicted the caches
and its idle worker threads may still be spinning.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BLOCK = 8
DROPPED_PER_BLOCK = 2


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
        )


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
    """Time `run_a` and `run_b` alternately until each has `min_runs` kept runs, or `max_seconds` have
    passed (at least one block of each is always kept)."""
    for _ in range(warmup):
        run_a()
        run_b()
    kept: tuple[list[float], list[float]] = ([], [])
    deadline = time.perf_counter() + max_seconds
    while not kept[0] or (len(kept[0]) < min_runs and time.perf_counter() < deadline):
        for fn, times in ((run_a, kept[0]), (run_b, kept[1])):
            for i in range(BLOCK):
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                if i >= DROPPED_PER_BLOCK:
                    times.append(elapsed)
        advance(BLOCK - DROPPED_PER_BLOCK)
    return LatencyStats.from_seconds(kept[0], batch_size), LatencyStats.from_seconds(kept[1], batch_size)
