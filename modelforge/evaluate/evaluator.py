"""Run the baseline and the result on the same samples and measure them side by side."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from modelforge.artifact import ModelArtifact
from modelforge.backends.onnxruntime import create_session, default_threads, fixed_batch_size
from modelforge.data import BoundDataset
from modelforge.errors import InputError
from modelforge.evaluate.latency import interleaved_latency
from modelforge.evaluate.metrics import ComparisonAccumulator
from modelforge.passes.base import Progress
from modelforge.recipe import EvaluateConfig

EVAL_BATCH = 32


def evaluate_pair(
    baseline: ModelArtifact,
    result: ModelArtifact,
    data: BoundDataset,
    data_source: str,
    config: EvaluateConfig,
    progress: Progress,
) -> dict[str, Any]:
    threads = config.latency.threads or default_threads()
    session_a = create_session(baseline.path, threads, stage="evaluate")
    session_b = create_session(result.path, threads, stage="evaluate")
    labels = data.labels()
    batch = fixed_batch_size(baseline.io) or EVAL_BATCH

    accumulator = ComparisonAccumulator()
    seen = 0
    progress.start("Evaluating", data.num_samples)
    try:
        for feeds in data.batches(batch):
            n = len(next(iter(feeds.values())))
            out_a, out_b = session_a.run(None, feeds), session_b.run(None, feeds)
            batch_labels = labels[seen : seen + n] if labels is not None else None
            if batch_labels is not None and out_a[0].ndim == 2 and batch_labels.max(initial=0) >= out_a[0].shape[1]:
                raise InputError(
                    f"eval data {data.dataset.path}: label {int(batch_labels.max())} is out of range for "
                    f"output '{baseline.io.outputs[0].name}' with {out_a[0].shape[1]} classes"
                )
            accumulator.update(out_a, out_b, batch_labels)
            seen += n
            progress.advance(n)
    finally:
        progress.stop()
    metrics = accumulator.summary(has_labels=labels is not None)

    record: dict[str, Any] = {"data": data_source, "metrics": metrics, "latency": None}
    if not config.skip_latency:
        record["latency"] = _latency(session_a, session_b, data, baseline, config, threads, progress)
    return record


def _latency_feeds(data: BoundDataset, batch_size: int) -> dict[str, np.ndarray]:
    """A real batch from the data (samples repeated if the set is smaller than the batch)."""
    feeds = next(data.batches(batch_size))
    n = len(next(iter(feeds.values())))
    if n < batch_size:
        reps = -(-batch_size // n)
        feeds = {k: np.concatenate([v] * reps)[:batch_size] for k, v in feeds.items()}
    return feeds


def _latency(session_a, session_b, data, baseline, config: EvaluateConfig, threads: int, progress) -> dict:
    settings = config.latency
    fixed = fixed_batch_size(baseline.io)
    batch_size = fixed or settings.batch_size
    feeds = _latency_feeds(data, batch_size)
    progress.start("Measuring latency", settings.min_runs)
    try:
        stats_a, stats_b = interleaved_latency(
            lambda: session_a.run(None, feeds),
            lambda: session_b.run(None, feeds),
            batch_size=batch_size,
            warmup=settings.warmup,
            min_runs=settings.min_runs,
            max_seconds=settings.max_seconds,
            advance=progress.advance,
        )
    finally:
        progress.stop()
    return {
        "batch_size": batch_size,
        "threads": threads,
        "method": "interleaved blocks, same input, same session options",
        "baseline": asdict(stats_a),
        "result": asdict(stats_b),
        "speedup": stats_a.p50_ms / stats_b.p50_ms,
    }
