"""Output-comparison metrics, accumulated batch by batch so memory stays flat."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _flatten(outputs: list[np.ndarray]) -> np.ndarray:
    """All outputs of each sample as one float64 vector (rows = samples)."""
    n = outputs[0].shape[0]
    return np.concatenate([np.asarray(o, dtype=np.float64).reshape(n, -1) for o in outputs], axis=1)


def is_classifier_output(output: np.ndarray) -> bool:
    """[N, C] scores with C > 1: top-1 class comparisons make sense."""
    return output.ndim == 2 and output.shape[1] > 1


TOP_K = 5
CONFIDENCE_PERCENTILES = (5, 25, 50, 75, 95)


def top1_confidence(scores: np.ndarray) -> tuple[np.ndarray, bool]:
    """Probability of the top-1 class per sample, and whether a softmax was applied: rows that already are
    probabilities (in [0, 1], summing to 1) are taken as they are, anything else is treated as logits."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size and scores.min() >= 0 and scores.max() <= 1 and np.allclose(scores.sum(axis=1), 1, atol=1e-3):
        return scores.max(axis=1), False
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return 1.0 / shifted.sum(axis=1), True  # max(softmax) = exp(0) / sum


def confidence_summary(values: list[float]) -> dict[str, float] | None:
    """Mean and percentiles of the top-1 confidence (a falling confidence warns before accuracy drops)."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]  # rows of NaN scores have no confidence
    if not array.size:
        return None
    out = {"mean": float(array.mean())}
    percentiles = np.percentile(array, CONFIDENCE_PERCENTILES)
    out.update({f"p{q}": float(v) for q, v in zip(CONFIDENCE_PERCENTILES, percentiles, strict=True)})
    return out


@dataclass
class ComparisonAccumulator:
    """Accuracy (with labels), top-1 agreement, cosine and SQNR between baseline and result outputs."""

    samples: int = 0
    correct_baseline: int = 0
    correct_result: int = 0
    agree: int = 0
    classified: int = 0
    cosine_sum: float = 0.0
    signal_power: float = 0.0
    noise_power: float = 0.0
    max_abs_error: float = 0.0
    cosines: list[float] = field(default_factory=list)
    top5_counted: int = 0
    top5_baseline: int = 0
    top5_result: int = 0
    confidence_baseline: list[float] = field(default_factory=list)
    confidence_result: list[float] = field(default_factory=list)
    softmax_applied: bool = False

    def update(self, baseline: list[np.ndarray], result: list[np.ndarray], labels: np.ndarray | None) -> None:
        a, b = _flatten(baseline), _flatten(result)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        dots = np.einsum("ij,ij->i", a, b)
        # Two all-zero outputs are identical (cosine 1); one zero output against a non-zero one is 0.
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.all(a == b, axis=1).astype(float))
        self.cosine_sum += float(cos.sum())
        self.cosines.extend(cos.tolist())
        self.signal_power += float(np.sum(a * a))
        self.noise_power += float(np.sum((a - b) ** 2))
        # np.maximum, not max(): a NaN output must show as NaN (null in the report), never as "no error".
        self.max_abs_error = float(np.maximum(self.max_abs_error, np.max(np.abs(a - b)) if a.size else 0.0))
        self.samples += a.shape[0]
        if is_classifier_output(baseline[0]):
            top_a, top_b = baseline[0].argmax(axis=1), result[0].argmax(axis=1)
            self.classified += len(top_a)
            self.agree += int(np.sum(top_a == top_b))
            for scores, confidences in ((baseline[0], self.confidence_baseline), (result[0], self.confidence_result)):
                confidence, softmaxed = top1_confidence(scores)
                confidences.extend(confidence.tolist())
                self.softmax_applied |= softmaxed
            if labels is not None:
                self.correct_baseline += int(np.sum(top_a == labels))
                self.correct_result += int(np.sum(top_b == labels))
                if baseline[0].shape[1] > TOP_K:
                    self.top5_counted += len(labels)
                    self.top5_baseline += _in_top_k(baseline[0], labels)
                    self.top5_result += _in_top_k(result[0], labels)

    def summary(self, has_labels: bool) -> dict[str, float | int | None]:
        n = max(self.samples, 1)
        accuracy = has_labels and self.classified > 0
        with np.errstate(divide="ignore", invalid="ignore"):  # NaN outputs give a NaN SQNR: null, not "identical"
            sqnr = 10 * np.log10(self.signal_power / self.noise_power) if self.noise_power != 0 else float("inf")
        top5 = self.top5_counted if accuracy else 0
        return {
            "samples": self.samples,
            "accuracy_baseline": self.correct_baseline / self.classified if accuracy else None,
            "accuracy_result": self.correct_result / self.classified if accuracy else None,
            "top1_agreement": self.agree / self.classified if self.classified else None,
            "output_cosine": self.cosine_sum / n,
            "output_cosine_min": min(self.cosines) if self.cosines else None,
            "sqnr_db": float(sqnr) if np.isfinite(sqnr) else None,  # None: identical (max_abs_error 0) or NaN
            "max_abs_error": self.max_abs_error,
            "top5_accuracy_baseline": self.top5_baseline / top5 if top5 else None,
            "top5_accuracy_result": self.top5_result / top5 if top5 else None,
            "confidence_baseline": confidence_summary(self.confidence_baseline),
            "confidence_result": confidence_summary(self.confidence_result),
            "confidence_source": "softmax of the outputs" if self.softmax_applied else "outputs (probabilities)",
        }


def _in_top_k(scores: np.ndarray, labels: np.ndarray, k: int = TOP_K) -> int:
    top = np.argpartition(-np.asarray(scores), k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == np.asarray(labels)[:, None], axis=1)))
