"""baseline_stats.json: what the model's inputs and top-1 confidence looked like on the data it was shipped with.

Built at export time from the calibration and evaluation data; `modelforge drift` scores new requests against
it, so a serving team watches input drift and model degradation from the first day.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.data import BoundDataset
from modelforge.errors import InputError
from modelforge.monitoring.features import (
    MAX_FEATURES_PER_INPUT,
    MAX_VALUES_PER_FEATURE,
    feature_axis,
    per_feature,
    subsample,
    summarize,
    top1_confidence,
)

BASELINE_NAME = "baseline_stats.json"
BASELINE_VERSION = 1
# Samples of each data set a baseline reads (enough for stable deciles; bounded time at export).
MAX_BASELINE_SAMPLES = 2048


class FeatureCollector:
    """Streams batches of one input and keeps a bounded, seeded subsample of every feature's values."""

    def __init__(self, total_samples: int, seed: int):
        self.total = max(1, total_samples)
        self.rng = np.random.default_rng(seed)
        self.parts: list[np.ndarray] = []
        self.shape: tuple[int, ...] | None = None

    def add(self, batch: np.ndarray) -> None:
        self.shape = self.shape or tuple(batch.shape)
        values = per_feature(batch)[:MAX_FEATURES_PER_INPUT]
        share = math.ceil(MAX_VALUES_PER_FEATURE * len(batch) / self.total)
        self.parts.append(subsample(values, share, self.rng))

    def features(self) -> list[dict[str, Any]]:
        if not self.parts:
            return []
        values = np.concatenate(self.parts, axis=1)
        return [{"index": i, **summarize(row)} for i, row in enumerate(values)]


def whole_batches_of(data: BoundDataset, limit: int, batch_size: int = 1) -> BoundDataset:
    """The first `limit` samples, in whole batches (a model with a fixed batch axis takes nothing else)."""
    count = min(limit, data.num_samples)
    return data.window(0, max(count - count % batch_size, min(count, batch_size)))


def collect_inputs(data: BoundDataset, seed: int, batch_size: int = 64) -> list[dict[str, Any]]:
    """Per input, per feature statistics of `data` (its first MAX_BASELINE_SAMPLES samples)."""
    data = whole_batches_of(data, MAX_BASELINE_SAMPLES)
    collectors = {name: FeatureCollector(data.num_samples, seed) for name in data.keys}
    for batch in data.batches(batch_size):
        for name, values in batch.items():
            collectors[name].add(values)
    inputs = []
    for name, collector in collectors.items():
        shape = collector.shape or ()
        inputs.append(
            {
                "name": name,
                "dtype": str(data.dtypes[name]),
                "sample_shape": list(shape[1:]),
                "feature_axis": feature_axis(shape) if len(shape) > 1 else 0,
                "features": collector.features(),
            }
        )
    return inputs


def collect_confidence(backend: Any, data: BoundDataset, batch_size: int = 64) -> dict[str, Any] | None:
    """Top-1 confidence of the model's first output over `data`; None when it is not a [batch, classes] output."""
    data = whole_batches_of(data, MAX_BASELINE_SAMPLES, batch_size)
    values = []
    for feeds in data.batches(batch_size):
        first = backend.run(feeds)[0]
        if first.ndim != 2 or first.shape[1] < 2:
            return None
        values.append(top1_confidence(first))
    if not values:
        return None
    return summarize(np.concatenate(values))


def build_baseline(
    model_path: Path | None,
    calibration: BoundDataset | None,
    evaluation: BoundDataset | None,
    *,
    seed: int = 0,
    threads: int | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """The baseline of a shipped model: input features from the calibration data (the evaluation data when
    there is none), top-1 confidence on both. `batch_size`: the model's fixed batch, if it has one."""
    reference = calibration if calibration is not None else evaluation
    if reference is None:
        raise ValueError("a baseline needs calibration or evaluation data")
    confidence: dict[str, Any] = {}
    output_name = None
    if model_path is not None:
        from modelforge.runtimes.base import open_backend

        backend = open_backend(model_path, threads=threads, stage="export")
        output_name = backend.output_names[0]
        for role, data in (("calibration", calibration), ("evaluation", evaluation)):
            if data is not None:
                summary = collect_confidence(backend, data, batch_size)
                if summary is not None:
                    confidence[role] = summary
    return {
        "baseline_version": BASELINE_VERSION,
        "model": model_path.name if model_path is not None else None,
        "data": str(reference.dataset.path),
        "samples": min(reference.num_samples, MAX_BASELINE_SAMPLES),
        "batch_size": batch_size,
        "inputs": collect_inputs(reference, seed),
        "confidence": {"output": output_name, **confidence} if confidence else None,
    }


def escalation_record(escalated: np.ndarray, threshold: float, output: str = "escalated") -> dict[str, Any]:
    """A cascade's escalation share on the eval data (the `escalation` field): in production a rising share is
    the first sign the inputs changed, before any label arrives. `output`: the graph output holding the flags."""
    flags = np.asarray(escalated, dtype=bool)
    return {
        "output": output,
        "threshold": float(threshold),
        "samples": int(flags.size),
        "escalated": int(flags.sum()),
        "share": float(flags.mean()) if flags.size else 0.0,
    }


def find_baseline(path: Path) -> Path:
    """The baseline file a `drift` argument names: the file itself, or the one in a folder (a Jetson bundle,
    a Triton model folder `<repo>/<name>/`, or the root of a repository written before models had their own)."""
    if not path.is_dir():
        return path
    if (path / BASELINE_NAME).is_file():
        return path / BASELINE_NAME
    models = sorted(p.name for p in path.iterdir() if (p / BASELINE_NAME).is_file())
    hint = f"name a model's folder: {', '.join(str(path / m) for m in models[:5])}" if models else None
    raise InputError(f"baseline: {path} holds no {BASELINE_NAME}", hint=hint)
