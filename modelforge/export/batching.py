"""The batch sweep behind a serving config: latency, throughput and peak memory per batch size, and the
dynamic-batching settings chosen from it.

Measured on onnxruntime's CPU provider of this machine (the figures name it): on the serving machine the
absolute numbers differ, but where throughput stops growing with the batch, and how memory grows with it,
carry over far better than a guess. Memory is each batch size's peak RSS growth in a fresh process
(modelforge.measure.profile), so one measurement cannot inflate the next. The sweep's inputs are real
samples (repeated to fill larger batches) or, with no data, inputs made from the model's IO spec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelforge.errors import InputError

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.model.artifact import IOSpec

# Real samples a sweep's batches are made of (repeated to fill larger batches).
SWEEP_SAMPLES = 32
# Preferred batch sizes: the smallest batch reaching this share of the best throughput, and the best one.
KNEE_SHARE = 0.9
# The batcher waits at most this long for a batch to fill (microseconds) whatever the sweep says.
MAX_QUEUE_DELAY_US = 10_000


def measure_batches(
    model: Path,
    feeds_for: Callable[[int], dict[str, np.ndarray]],
    batch_sizes: Sequence[int],
    *,
    threads: int,
    max_seconds: float = 2.0,
    measure_memory: bool = True,
    advance: Callable[[int], None] = lambda _: None,
    runtime: str | None = None,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """One row per batch size: p50/p99 latency (ms), samples per second, peak memory growth (bytes), measured on
    the runtime that serves the model (by default the one its file suffix names)."""
    from modelforge.measure.latency import interleaved_runs
    from modelforge.measure.profile import fresh_process_memory, prime_runtime
    from modelforge.runtimes.base import open_backend, runtime_for

    runtime = runtime or runtime_for(model)
    prime_runtime(runtime, threads)
    backend = open_backend(model, runtime=runtime, precision=precision, threads=threads, stage="export")
    rows = []
    for batch_size in batch_sizes:
        feeds = feeds_for(batch_size)
        timings = interleaved_runs(
            [lambda feeds=feeds: backend.run(feeds)],
            warmup=3,
            min_runs=12,
            max_seconds=max_seconds,
            min_seconds=min(0.3, max_seconds),
        )
        stats = timings.stats(batch_size)[0]
        memory = (
            fresh_process_memory(model, threads, feeds, "export", runtime=runtime, precision=precision)
            if measure_memory
            else None
        )
        rows.append(
            {
                "batch_size": batch_size,
                "p50_ms": stats.p50_ms,
                "p99_ms": stats.p99_ms,
                "throughput_per_s": stats.throughput_per_s,
                "runs": stats.runs,
                "peak_memory_bytes": (memory or {}).get("peak_rss_growth_bytes"),
            }
        )
        advance(1)
    return rows


def choose_batching(rows: list[dict[str, Any]], memory_budget_bytes: int | None) -> dict[str, Any]:
    """max_batch_size: the largest measured batch whose peak memory fits the budget; preferred sizes: where
    throughput reaches KNEE_SHARE of the best (bigger batches only add latency) and the best; queue delay:
    one batch-1 inference (waiting longer than serving a lone request alone costs more than it saves)."""
    if not rows:
        raise ValueError("no batch sizes were measured")
    fits = [
        r
        for r in rows
        if memory_budget_bytes is None
        or (r["peak_memory_bytes"] is not None and r["peak_memory_bytes"] <= memory_budget_bytes)
    ]
    for row in rows:
        row["within_budget"] = row in fits
    if not fits:
        return {"max_batch_size": None, "preferred_batch_sizes": [], "max_queue_delay_microseconds": 0}
    best = max(fits, key=lambda r: r["throughput_per_s"])
    knee = min(
        (r for r in fits if r["throughput_per_s"] >= KNEE_SHARE * best["throughput_per_s"]),
        key=lambda r: r["batch_size"],
    )
    single = min(rows, key=lambda r: r["batch_size"])
    return {
        "max_batch_size": max(r["batch_size"] for r in fits),
        "preferred_batch_sizes": sorted({knee["batch_size"], best["batch_size"]}),
        "max_queue_delay_microseconds": int(min(MAX_QUEUE_DELAY_US, max(1, round(single["p50_ms"] * 1e3)))),
        "best_throughput_batch": best["batch_size"],
        "knee_batch": knee["batch_size"],
        "memory_budget_bytes": memory_budget_bytes,
    }


def tile_samples(samples: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """A batch of `batch_size` made of real samples, repeated when there are fewer."""
    out = {}
    for name, values in samples.items():
        reps = -(-batch_size // len(values))
        out[name] = np.ascontiguousarray(np.concatenate([values] * reps)[:batch_size])
    return out


def sweep_samples(calibration: BoundDataset | None, evaluation: BoundDataset | None) -> dict[str, np.ndarray] | None:
    """Up to SWEEP_SAMPLES real samples, from the calibration data (else the evaluation data); None without data."""
    data = calibration if calibration is not None else evaluation
    if data is None:
        return None
    return next(data.window(0, min(SWEEP_SAMPLES, data.num_samples)).batches(SWEEP_SAMPLES))


def generated_samples(io: IOSpec, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """SWEEP_SAMPLES inputs made from the IO spec, seeded: floats uniform in [0, 1), integers small and
    non-negative (token ids, indices), booleans False; a dynamic axis other than the batch takes --dim."""
    from modelforge.export.shapes import profile_shapes

    shapes = profile_shapes(io, SWEEP_SAMPLES, SWEEP_SAMPLES, SWEEP_SAMPLES, dims)
    rng = np.random.default_rng(0)
    samples = {}
    for spec in io.inputs:
        shape = shapes[spec.name][0]
        dtype = np.dtype("bool" if spec.dtype == "bool" else spec.dtype)
        if dtype.kind == "f":
            samples[spec.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind in "iu":
            samples[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        elif dtype.kind == "b":
            samples[spec.name] = np.zeros(shape, dtype=bool)
        else:
            raise InputError(
                f"input '{spec.name}' ({spec.dtype}): no inputs can be generated for it",
                hint="pass --calibration DATA",
            )
    return samples
