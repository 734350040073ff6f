"""The cascade's accuracy and escalation share at every threshold, and the choice of one.

Each candidate threshold sits halfway between two neighbouring distinct confidences of the eval data, so the
rows it escalates do not depend on the last bit of a softmax computed by another runtime; the curve is exact
(cumulative sums over the rows sorted by confidence), not sampled, up to MAX_POINTS candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_POINTS = 400  # beyond this many distinct confidences, thresholds at evenly spaced ranks


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    escalated: int  # rows sent to the large model
    escalated_share: float
    accuracy: float | None  # None without labels
    agreement_large: float  # share of rows whose answer equals the large model's

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "threshold": self.threshold,
            "escalated": self.escalated,
            "escalated_share": self.escalated_share,
            "accuracy": self.accuracy,
            "agreement_large": self.agreement_large,
        }


def candidate_thresholds(conf: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """0 (nothing escalates), midpoints between neighbouring distinct confidences, and one threshold above the
    highest confidence (everything escalates: 1.0 when that is above it, else just above the maximum)."""
    distinct = np.unique(conf.astype(np.float64))
    if len(distinct) > max_points:  # evenly spaced ranks, each still a midpoint of two neighbours
        picks = np.unique(np.linspace(0, len(distinct) - 2, max_points).round().astype(int))
        mids = (distinct[picks] + distinct[picks + 1]) / 2
    else:
        mids = (distinct[:-1] + distinct[1:]) / 2
    top = float(distinct[-1]) if len(distinct) else 0.0
    above = 1.0 if top < 1.0 else float(np.nextafter(np.float32(top), np.float32(2.0)))
    return np.unique(np.concatenate([[0.0], mids, [above]]))


def cascade_curve(
    conf: np.ndarray, small_pred: np.ndarray, large_pred: np.ndarray, labels: np.ndarray | None
) -> list[CurvePoint]:
    """The cascade at every candidate threshold: a row escalates when its confidence is below the threshold."""
    n = len(conf)
    order = np.argsort(conf, kind="stable")
    sorted_conf = conf[order].astype(np.float64)
    agree_small = (small_pred == large_pred)[order].astype(np.int64)
    agree_cum = np.concatenate([[0], np.cumsum(agree_small)])
    if labels is not None:
        small_ok = (small_pred == labels)[order].astype(np.int64)
        large_ok = (large_pred == labels)[order].astype(np.int64)
        small_cum = np.concatenate([[0], np.cumsum(small_ok)])
        large_cum = np.concatenate([[0], np.cumsum(large_ok)])
    points = []
    for t in candidate_thresholds(conf):
        k = int(np.searchsorted(sorted_conf, t, side="left"))  # rows with confidence < t
        accuracy = None
        if labels is not None:
            accuracy = float((large_cum[k] + small_cum[n] - small_cum[k]) / max(n, 1))
        agreement = float((k + agree_cum[n] - agree_cum[k]) / max(n, 1))
        points.append(CurvePoint(float(t), k, k / max(n, 1), accuracy, agreement))
    return points


def point_at(
    conf: np.ndarray, small_pred: np.ndarray, large_pred: np.ndarray, labels: np.ndarray | None, threshold: float
) -> CurvePoint:
    """The cascade at one given threshold (--threshold)."""
    escalate = conf < threshold
    answer = np.where(escalate, large_pred, small_pred)
    n = max(len(conf), 1)
    accuracy = float((answer == labels).mean()) if labels is not None and len(labels) else None
    return CurvePoint(
        float(threshold),
        int(escalate.sum()),
        float(escalate.sum() / n),
        accuracy,
        float((answer == large_pred).sum() / n),
    )


@dataclass(frozen=True)
class Choice:
    point: CurvePoint
    rule: str  # "max_accuracy_drop" | "max_mean_latency_ms" | "threshold"
    target_met: bool
    detail: str


def choose_by_accuracy(points: list[CurvePoint], large_accuracy: float, max_drop_pp: float) -> Choice:
    """The fewest escalations whose accuracy is within `max_drop_pp` points of the large model's."""
    floor = large_accuracy - max_drop_pp / 100
    ok = [p for p in points if p.accuracy is not None and p.accuracy >= floor - 1e-12]
    if ok:
        best = min(ok, key=lambda p: (p.escalated, p.threshold))
        return Choice(best, "max_accuracy_drop", True, f"fewest escalations within {max_drop_pp} pt of the large model")
    best = max(points, key=lambda p: (p.accuracy or 0.0, -p.escalated))
    return Choice(best, "max_accuracy_drop", False, f"no threshold is within {max_drop_pp} pt of the large model")


def choose_by_latency(points: list[CurvePoint], mean_ms: dict[float, float], max_mean_ms: float) -> Choice:
    """The most accurate measured point (agreement with the large model without labels) whose measured mean
    latency is within `max_mean_ms`: only thresholds timed in the same interleaved run are compared, never an
    interpolation or a figure from another run."""

    def quality(p: CurvePoint) -> float:
        return p.accuracy if p.accuracy is not None else p.agreement_large

    measured = [p for p in points if p.threshold in mean_ms]
    ok = [p for p in measured if mean_ms[p.threshold] <= max_mean_ms]
    if ok:
        best = max(ok, key=lambda p: (quality(p), -p.escalated))
        return Choice(best, "max_mean_latency_ms", True, f"most accurate measured threshold within {max_mean_ms} ms")
    best = min(measured or points, key=lambda p: p.escalated)
    return Choice(best, "max_mean_latency_ms", False, f"no measured threshold has mean latency <= {max_mean_ms} ms")


def thin_points(points: list[CurvePoint], keep: int) -> list[CurvePoint]:
    """Evenly spaced points (first and last kept): what a chart or the model's metadata needs."""
    if len(points) <= keep:
        return points
    picks = np.unique(np.linspace(0, len(points) - 1, keep).round().astype(int))
    return [points[i] for i in picks]
