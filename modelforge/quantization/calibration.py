"""Streaming calibration: run the float model batch by batch and keep only running statistics per tensor.

onnxruntime's calibrators keep every intermediate output of every sample in memory (about 29 MB per
sample on ResNet-18: 2.2 GB at 64 samples, 7.9 GB at 256). Here each batch's activations are reduced to
per-tensor statistics and dropped, so peak memory is set by the batch size, not by the number of samples:

- minmax: running min and max.
- percentile: a histogram of |x| per tensor (2048 bins by default) grown in place as the range widens;
  the range is clipped at the given percentile of |x| (99.99 by default).
- entropy: the same histogram; the clipping threshold minimises the KL divergence between the float
  distribution and its quantized version (TensorRT's calibration, vectorised over all thresholds).

Histograms cover [0, R] with a fixed number of bins. When a batch holds a value above R, R doubles (as many
times as needed) and pairs of bins merge: the re-binning is exact, no sample is ever re-read, and the final
bin width is within a factor two of (largest |x|) / bins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from modelforge.data import BoundDataset
from modelforge.errors import first_line

if TYPE_CHECKING:
    import onnx

# Float tensors feeding or leaving these ops are the ones a QDQ quantizer may place Q/DQ pairs on.
FLOAT_TYPES = (1, 10)  # onnx.TensorProto.FLOAT, FLOAT16

SMOOTHING = 1e-4  # count given to an empty bin of the quantized distribution (entropy method)

CalibrationMethod = Literal["minmax", "entropy", "percentile"]
METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")


def tensors_to_calibrate(model, op_types: set[str]) -> list[str]:
    """Float activations (not weights) entering or leaving quantizable nodes, in graph order."""
    value_types = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if vi.type.HasField("tensor_type"):
            value_types[vi.name] = vi.type.tensor_type.elem_type
    initializers = {t.name for t in model.graph.initializer}
    seen: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        for name in [*node.input, *node.output]:
            if name and name not in initializers and value_types.get(name) in FLOAT_TYPES:
                seen.setdefault(name)
    return list(seen)


def add_outputs(model, tensors: list[str]) -> None:
    """Expose every calibrated tensor as a graph output (graph inputs are read from the feeds)."""
    import onnx

    existing = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))


class MinMaxObserver:
    """Running min and max of each tensor: constant memory per tensor."""

    def __init__(self, names: list[str]):
        self.names = names
        self.low = {n: np.inf for n in names}
        self.high = {n: -np.inf for n in names}

    def update(self, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            if value.size:
                self.low[name] = min(self.low[name], float(value.min()))
                self.high[name] = max(self.high[name], float(value.max()))

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {n: (self.low[n], self.high[n]) for n in self.names if np.isfinite(self.low[n])}


@dataclass
class AbsHistogram:
    """Counts of |x| in `bins` equal bins over [0, top]; `top` only ever doubles, merging bin pairs exactly."""

    counts: np.ndarray
    top: float

    @classmethod
    def empty(cls, bins: int) -> AbsHistogram:
        return cls(np.zeros(bins, dtype=np.int64), 0.0)

    def add(self, magnitudes: np.ndarray) -> None:
        """`magnitudes`: a flat array of |x| (finite values only are counted)."""
        peak = float(magnitudes.max())
        if not math.isfinite(peak):
            magnitudes = magnitudes[np.isfinite(magnitudes)]
            if not magnitudes.size:
                return
            peak = float(magnitudes.max())
        if self.top == 0.0:
            if peak == 0.0:
                self.counts[0] += magnitudes.size
                return
            self.top = peak
        elif peak > self.top:
            self._grow(int(math.ceil(math.log2(peak / self.top))))
        counts, _ = np.histogram(magnitudes, bins=self.counts.size, range=(0.0, self.top))
        self.counts += counts

    def _grow(self, doublings: int) -> None:
        bins = self.counts.size
        factor = 1 << min(doublings, int(math.log2(bins)))
        merged = self.counts.reshape(-1, factor).sum(axis=1)
        self.counts = np.zeros(bins, dtype=np.int64)
        self.counts[: merged.size] = merged
        self.top *= 2.0**doublings

    @property
    def bin_width(self) -> float:
        return self.top / self.counts.size


class HistogramObserver(MinMaxObserver):
    """Exact min/max plus a histogram of |x| per tensor: memory is `bins` counters per tensor."""

    def __init__(self, names: list[str], bins: int = 2048):
        if bins < 256 or bins & (bins - 1):
            raise ValueError("histogram bins must be a power of two, at least 256")
        super().__init__(names)
        self.histograms = {n: AbsHistogram.empty(bins) for n in names}

    def update(self, values: dict[str, np.ndarray]) -> None:
        super().update(values)
        for name, value in values.items():
            if value.size:
                self.histograms[name].add(np.abs(value.ravel()))

    def percentile_ranges(self, percentile: float) -> dict[str, tuple[float, float]]:
        out = {}
        for name, (low, high) in self.ranges().items():
            hist = self.histograms[name]
            total = hist.counts.sum()
            if total == 0 or hist.top == 0.0:
                out[name] = (low, high)
                continue
            cdf = np.cumsum(hist.counts) / total
            index = int(np.searchsorted(cdf, percentile / 100.0))
            out[name] = _clip(low, high, (index + 1) * hist.bin_width)
        return out

    def entropy_ranges(self, symmetric: bool) -> dict[str, tuple[float, float]]:
        out = {}
        for name, (low, high) in self.ranges().items():
            hist = self.histograms[name]
            if hist.top == 0.0 or hist.counts.sum() == 0:
                out[name] = (low, high)
                continue
            # A non-negative tensor on an asymmetric (uint8) scale gets all 256 levels; otherwise one
            # side of a symmetric scale gets 128.
            levels = 256 if (low >= 0 and not symmetric) else 128
            out[name] = _clip(low, high, kl_threshold(hist.counts, levels) * hist.bin_width)
        return out


def _clip(low: float, high: float, threshold: float) -> tuple[float, float]:
    """The observed range, cut at ±threshold (a non-negative tensor keeps its lower bound)."""
    return max(low, -threshold), min(high, threshold)


def kl_threshold(counts: np.ndarray, levels: int = 128) -> int:
    """Number of leading bins to keep: the cut minimising KL(P || Q), TensorRT's entropy calibration.

    P is the histogram cut after `i` bins with everything beyond folded into the last kept bin; Q spreads each
    of `levels` equal groups of the kept bins evenly over its non-empty bins (what quantizing to `levels`
    steps keeps of P). Every candidate `i` in [levels, bins] is scored at once from cumulative sums.
    """
    h = counts.astype(np.float64)
    bins = h.size
    if bins <= levels:
        return bins
    with np.errstate(divide="ignore", invalid="ignore"):
        h_log_h = np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0)
    cum = np.concatenate([[0.0], np.cumsum(h)])
    cum_hlh = np.concatenate([[0.0], np.cumsum(h_log_h)])
    cum_nz = np.concatenate([[0.0], np.cumsum(h > 0)])
    total = cum[-1]

    cuts = np.arange(levels, bins + 1)  # i: bins kept
    # Group boundaries for each cut: floor(k * i / levels), k = 0..levels  -> shape (cuts, levels + 1)
    edges = (np.arange(levels + 1)[None, :] * cuts[:, None]) // levels
    group_sum = cum[edges[:, 1:]] - cum[edges[:, :-1]]
    group_nz = cum_nz[edges[:, 1:]] - cum_nz[edges[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.where(group_nz > 0, np.log(np.where(group_sum > 0, group_sum, 1.0) / np.maximum(group_nz, 1)), 0.0)
    kept = cum[cuts]
    outliers = total - kept
    last = h[cuts - 1]
    # sum_j p_j log p_j over kept bins, with the last bin holding last + outliers
    last_plogp = np.where(last + outliers > 0, (last + outliers) * np.log(np.maximum(last + outliers, 1e-300)), 0.0)
    last_hlogh = np.where(last > 0, last * np.log(np.maximum(last, 1e-300)), 0.0)
    p_log_p = cum_hlh[cuts] - last_hlogh + last_plogp
    # sum_j p_j log q_j: each group's mass times its log q; the outliers sit in the last bin. When that bin
    # is empty, Q gives it no mass: like TensorRT and onnxruntime, smooth it to a tiny count instead of an
    # infinite divergence (a few far outliers must not force the range out to them).
    log_q_last = np.where(last > 0, log_q[:, -1], np.log(SMOOTHING))
    p_log_q = np.sum(group_sum * log_q, axis=1) + outliers * log_q_last
    kl = (p_log_p - p_log_q) / total - np.log(total) + np.log(np.maximum(kept, 1e-300))
    kl = np.where(kept > 0, kl, np.inf)
    if not np.isfinite(kl).any():
        return bins
    # Ties (equal up to rounding: the same distribution cut at different empty bins) go to the smallest cut.
    best = np.min(kl)
    return int(cuts[int(np.argmax(kl <= best + 1e-9 * abs(best) + 1e-15))])


@dataclass(frozen=True)
class CalibrationResult:
    ranges: dict[str, tuple[float, float]]
    samples: int
    batches: int


def calibration_session(
    model_path: Path, tensors: list[str], threads: int | None, pass_name: str, model: onnx.ModelProto | None = None
):
    """A session of the model with every calibrated tensor exposed as an output. `model`: the content of
    `model_path` with its weights, when the caller holds it (copied, not changed; else the file is read)."""
    import onnx

    from modelforge.errors import PassError
    from modelforge.model.onnx_model import load_onnx, save_onnx

    if model is None:
        model = load_onnx(model_path)
    else:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    add_outputs(model, tensors)
    augmented = model_path.with_name("calibration-augmented.onnx")
    save_onnx(model, augmented)
    del model
    from modelforge.runtimes.onnxruntime import new_session, session_options

    # Basic optimizations only: fusions could remove the intermediate tensors being observed. Fatal-only logs:
    # a failed run raises with the reason; no second line on stderr.
    options = session_options(threads, optimization="basic", log_severity=4)
    try:
        return new_session(augmented, options)
    except Exception as exc:  # onnxruntime's own untyped errors
        raise PassError(pass_name, f"onnxruntime cannot run the model to calibrate it: {first_line(exc)}") from exc


def calibrate(
    model_path: Path,
    tensors: list[str],
    data: BoundDataset,
    *,
    method: CalibrationMethod = "minmax",
    batch_size: int = 8,
    threads: int | None = None,
    percentile: float = 99.99,
    bins: int = 2048,
    symmetric: bool = False,
    advance: Callable[[int], None] = lambda _: None,
    pass_name: str = "quantize",
    model: onnx.ModelProto | None = None,
) -> CalibrationResult:
    """Ranges of every tensor over the calibration samples, reading the data once, batch by batch.

    `symmetric`: the activations will use a symmetric scale (entropy then gives non-negative tensors 128
    levels instead of 256). `model`: the model file's content, when the caller holds it with its weights.
    """
    from modelforge.errors import PassError

    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}")
    session = calibration_session(model_path, tensors, threads, pass_name, model)
    output_names = [o.name for o in session.get_outputs()]
    wanted = set(tensors)
    observer = MinMaxObserver(tensors) if method == "minmax" else HistogramObserver(tensors, bins)
    samples = batches = 0
    for feeds in data.batches(batch_size):
        try:
            outputs = session.run(None, feeds)
        except Exception as exc:
            raise PassError(pass_name, f"calibration run failed on batch {batches}: {first_line(exc)}") from exc
        values = {n: v for n, v in zip(output_names, outputs, strict=True) if n in wanted}
        del outputs
        # Graph inputs are not graph outputs: observe them from the feeds.
        values.update({n: v for n, v in feeds.items() if n in wanted})
        observer.update(values)
        del values
        n = len(next(iter(feeds.values())))
        samples += n
        batches += 1
        advance(n)
    if method == "minmax":
        ranges = observer.ranges()
    elif method == "percentile":
        ranges = observer.percentile_ranges(percentile)
    else:
        ranges = observer.entropy_ranges(symmetric)
    return CalibrationResult(ranges=ranges, samples=samples, batches=batches)
