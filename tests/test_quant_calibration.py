"""Calibration methods: minmax, entropy (KL) and percentile, streamed batch by batch with bounded state."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, FAST_LATENCY, load_report, run_cli

from modelforge.quantization.calibration import AbsHistogram, HistogramObserver, MinMaxObserver, kl_threshold


def reference_kl_threshold(hist: np.ndarray, levels: int) -> int:
    """TensorRT's entropy calibration written as the plain loop over thresholds (slow, obviously right).
    Q is normalised by the kept mass (before smoothing), as the vectorised version does."""
    scores = []
    for i in range(levels, hist.size + 1):
        p = hist[:i].astype(float).copy()
        p[-1] += hist[i:].sum()
        edges = (np.arange(levels + 1) * i) // levels
        q = np.zeros(i)
        for g in range(levels):
            seg = hist[edges[g] : edges[g + 1]]
            nonzero = (seg > 0).sum()
            if nonzero:
                q[edges[g] : edges[g + 1]] = np.where(seg > 0, seg.sum() / nonzero, 0)
        q[(q == 0) & (p > 0)] = 1e-4  # smoothing, as TensorRT and onnxruntime do
        total, kept_mass = p.sum(), hist[:i].sum()
        kept = p > 0
        kl = float((p[kept] / total * np.log((p[kept] / total) / (q[kept] / kept_mass))).sum())
        scores.append((kl, i))
    best = min(kl for kl, _ in scores)
    return next(i for kl, i in scores if kl <= best + 1e-9 * abs(best) + 1e-15)  # ties: the smallest cut


@pytest.mark.parametrize("dist", ["normal", "relu", "laplace", "heavy_tail"])
def test_vectorised_kl_threshold_matches_the_plain_loop(dist):
    rng = np.random.default_rng(0)
    x = {
        "normal": rng.standard_normal(50_000),
        "relu": np.maximum(rng.standard_normal(50_000), 0),
        "laplace": rng.laplace(size=50_000),
        "heavy_tail": rng.standard_t(2, 50_000),
    }[dist]
    hist, _ = np.histogram(np.abs(x), bins=512, range=(0, np.abs(x).max()))
    assert kl_threshold(hist, 128) == reference_kl_threshold(hist, 128)


def test_histogram_grows_by_exact_bin_merges():
    """Data arriving with a growing range gives the same counts as one histogram over the final range."""
    rng = np.random.default_rng(1)
    batches = [rng.uniform(0, 0.9, 1000), rng.uniform(0, 3.1, 1000), rng.uniform(0, 7.7, 1000)]
    hist = AbsHistogram.empty(256)
    for batch in batches:
        hist.add(np.abs(batch))
    assert hist.top >= 7.7 and hist.top < 2 * 7.7 + 1e-9
    direct, _ = np.histogram(np.concatenate(batches), bins=256, range=(0, hist.top))
    assert hist.counts.sum() == 3000
    # Values on a shared bin edge may fall either side after float rounding: allow a handful.
    assert np.abs(hist.counts - direct).sum() <= 4


def test_observer_state_does_not_grow_with_samples():
    """Peak memory is set by one batch: the per-tensor state is the same after 1 batch and after 40."""
    rng = np.random.default_rng(2)
    names = ["a", "b"]
    one, many = HistogramObserver(names, bins=1024), HistogramObserver(names, bins=1024)
    one.update({n: rng.standard_normal(4096).astype(np.float32) for n in names})
    for scale in range(1, 41):
        many.update({n: scale * rng.standard_normal(4096).astype(np.float32) for n in names})

    def state_bytes(observer):
        return sum(h.counts.nbytes for h in observer.histograms.values())

    assert state_bytes(one) == state_bytes(many) == 2 * 1024 * 8


def test_percentile_and_entropy_clip_inside_the_observed_range():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.standard_normal(100_000), [40.0, -35.0]]).astype(np.float32)  # two outliers
    relu = np.maximum(values, 0)
    observer = HistogramObserver(["x", "r"])
    observer.update({"x": values, "r": relu})
    minmax = MinMaxObserver(["x", "r"])
    minmax.update({"x": values, "r": relu})
    lo, hi = minmax.ranges()["x"]
    for method_ranges in (observer.percentile_ranges(99.99), observer.entropy_ranges(symmetric=False)):
        plo, phi = method_ranges["x"]
        assert lo <= plo < 0 < phi <= hi
        assert phi < 10, "outliers must be clipped"
        rlo, rhi = method_ranges["r"]
        assert rlo == 0.0 and 0 < rhi < 10, "a non-negative tensor keeps 0 as its lower bound"


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_each_method_quantizes_the_digits_cnn_through_the_cli(tmp_path, method):
    out = tmp_path / "out"
    result = run_cli(
        "quantize",
        DIGITS_MODEL,
        "-c",
        DIGITS_CALIBRATION,
        "-e",
        DIGITS_EVAL,
        "-o",
        out,
        "--method",
        method,
        "--calibration-samples",
        "96",
        "--max-accuracy-drop",
        "1.0",
        "--no-fallback",
        "--threads",
        str(FAST_LATENCY["threads"]),
    )
    assert result.returncode == 0, result.explain()
    assert "Calibrating" in result.stderr  # the progress bar
    stage = load_report(out)["stages"][-1]["metrics"]
    assert stage["calibration_method"] == method
    assert stage["calibration_samples"] == 96  # --calibration-samples limits the calibration
    assert stage["preset"] == "cnn" and stage["family"] == "convolutional"
    assert load_report(out)["summary"]["accuracy_drop_pp"] <= 1.0
