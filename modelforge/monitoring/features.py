"""Which values of an input tensor form one monitored feature, and the statistics kept per feature.

A tabular input [N, F] has F features; an image [N, C, H, W] (or [N, H, W, C]) has one feature per channel,
pooling every pixel of that channel; other ranks use axis 1. What a baseline keeps of a feature is small and
fixed-size (moments, 101 quantiles, decile histogram), so baseline_stats.json stays readable whatever the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The decile edges are PSI's bins; the percentile sketch is KS's reference CDF.
PSI_BINS = 10
SKETCH_POINTS = 101
REPORTED_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# Features beyond this many per input are not monitored (a wide one-hot table would make a huge baseline).
MAX_FEATURES_PER_INPUT = 1024
# Values kept per feature to compute statistics from (seeded subsample beyond it).
MAX_VALUES_PER_FEATURE = 200_000


def feature_axis(shape: tuple[int, ...]) -> int:
    """The axis whose index names a feature: the channel axis of images, the column of tables."""
    if len(shape) == 4 and shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        return 3  # NHWC
    return 1


def per_feature(values: np.ndarray) -> np.ndarray:
    """[features, values]: every value of each feature across samples (and pixels or positions)."""
    if values.ndim == 1:
        return values.reshape(1, -1).astype(np.float64)
    axis = feature_axis(values.shape)
    moved = np.moveaxis(values, axis, 0)
    return moved.reshape(moved.shape[0], -1).astype(np.float64)


def summarize(values: np.ndarray) -> dict[str, Any]:
    """Moments, quantiles, the percentile sketch and the decile histogram of one feature's values."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"count": 0}
    sketch = np.quantile(values, np.linspace(0, 1, SKETCH_POINTS))
    edges = np.unique(np.quantile(values, np.linspace(0, 1, PSI_BINS + 1))[1:-1])
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {f"p{round(q * 100)}": float(np.quantile(values, q)) for q in REPORTED_QUANTILES},
        "sketch": [float(v) for v in sketch],
        "histogram": {"inner_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def subsample(values: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` values per row (features keep their own random subset, seeded)."""
    if values.shape[1] <= limit:
        return values
    keep = np.sort(rng.choice(values.shape[1], size=limit, replace=False))
    return values[:, keep]


def top1_confidence(logits: np.ndarray) -> np.ndarray:
    """The top class's probability per sample: softmax of logits, or the row itself when it already sums to 1."""
    rows = logits.reshape(logits.shape[0], -1).astype(np.float64)
    is_probability = np.all(rows >= 0) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3)
    if not is_probability:
        rows = np.exp(rows - rows.max(axis=1, keepdims=True))
        rows /= rows.sum(axis=1, keepdims=True)
    return rows.max(axis=1)
