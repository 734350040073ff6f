"""Latency of the real cascade graph, at the run's batch size, at several thresholds along the curve, interleaved
with the two single models (measure/latency.py): never computed from the two models' latencies, because the
gather/scatter, the `If` and which rows escalate are what a cascade costs.

Every callable cycles through the same eval batches in the same (seeded, shuffled: data sorted by class would
put one class in every early run) order, so each threshold escalates exactly the rows it would on that data,
and its mean is the mean over that mix. Each threshold is run at least once over every batch where the time
budget allows (`min_runs`), and the cycle shifts by one batch per pass: the runs the interleaving drops at the
start of each block (measure/latency.py) would otherwise always fall on the same batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modelforge.cascade.graph import THRESHOLD_INPUT
from modelforge.measure.latency import LatencyStats, interleaved_runs


def cycling(
    backend: Any, batches: Sequence[Mapping[str, np.ndarray]], extra: Mapping[str, np.ndarray] | None = None
) -> Callable[[], object]:
    """A callable running `backend` on the next batch each call (and `extra` feeds, the threshold)."""
    feeds = [{**batch, **(extra or {})} for batch in batches]
    counter = itertools.count()

    def run() -> object:
        n = next(counter)
        return backend.run(feeds[(n + n // len(feeds)) % len(feeds)])

    return run


def measure_thresholds(
    cascade: Any,
    small: Any,
    large: Any,
    batches: Sequence[Mapping[str, np.ndarray]],
    thresholds: Sequence[float],
    *,
    batch_size: int,
    warmup: int = 5,
    min_runs: int = 50,
    min_seconds: float = 1.0,
    max_seconds: float = 10.0,
    seed: int = 0,
    max_runs_per_pass: int = 2000,
) -> dict[str, Any]:
    """{"small": stats, "large": stats, "cascade": [{"threshold": t, **stats}, ...], "stopped": ...}: each model
    and each threshold measured in interleaved blocks on the same batches."""
    order = np.random.default_rng(seed).permutation(len(batches))
    batches = [batches[i] for i in order]
    min_runs = max(min_runs, min(len(batches), max_runs_per_pass))  # one whole pass over the data, if time allows
    runs = [cycling(small, batches), cycling(large, batches)]
    runs += [cycling(cascade, batches, {THRESHOLD_INPUT: np.array(t, dtype=np.float32)}) for t in thresholds]
    timings = interleaved_runs(runs, warmup=warmup, min_runs=min_runs, min_seconds=min_seconds, max_seconds=max_seconds)
    stats = timings.stats(batch_size)
    return {
        "batch_size": batch_size,
        "batches": len(batches),
        "small": _record(stats[0], batch_size),
        "large": _record(stats[1], batch_size),
        "cascade": [
            {"threshold": float(t), **_record(s, batch_size)} for t, s in zip(thresholds, stats[2:], strict=True)
        ],
        "stopped": timings.stopped,
        "seconds": timings.elapsed_s,
    }


def _record(stats: LatencyStats, batch_size: int) -> dict[str, float | int]:
    # Throughput from the mean, not the p50: a cascade's times are bimodal (escalated or not), and its p50 is
    # the small model's alone whenever fewer than half the batches escalate.
    return {
        "runs": stats.runs,
        "mean_ms": stats.mean_ms,
        "p50_ms": stats.p50_ms,
        "p99_ms": stats.p99_ms,
        "throughput_per_s": batch_size * 1e3 / stats.mean_ms if stats.mean_ms else 0.0,
    }


def thresholds_to_measure(points: Sequence[Any], chosen: float | None, shares: Sequence[float]) -> list[float]:
    """The chosen threshold and the curve points nearest the given escalation shares (no repeats)."""
    picked: list[float] = [] if chosen is None else [float(chosen)]
    for share in shares:
        nearest = min(points, key=lambda p: abs(p.escalated_share - share))
        if nearest.threshold not in picked:
            picked.append(nearest.threshold)
    return picked
