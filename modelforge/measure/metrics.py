"""Output-comparison metrics, accumulated batch by batch so memory stays flat.

Pure numpy (no scikit-learn or scipy at run time): macro F1 from confusion counts, so it streams; Spearman from
average ranks, as scipy.stats.spearmanr computes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modelforge.data.sources import IGNORE_LABEL


def _flatten(outputs: list[np.ndarray]) -> np.ndarray:
    """All outputs of each sample as one float64 vector (rows = samples)."""
    n = outputs[0].shape[0]
    return np.concatenate([np.asarray(o, dtype=np.float64).reshape(n, -1) for o in outputs], axis=1)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b` (rows = samples; an embedding's cosine to the
    original's). Two all-zero rows are identical (cosine 1); one zero row against a non-zero one is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.all(a == b, axis=1).astype(float))


def add_confusion(confusion: np.ndarray | None, labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """`confusion[true, predicted]` counts plus this batch's; grown when a class id exceeds the current size."""
    size = max(classes, int(labels.max(initial=-1)) + 1, int(predicted.max(initial=-1)) + 1)
    if confusion is None:
        confusion = np.zeros((size, size), dtype=np.int64)
    elif confusion.shape[0] < size:
        grown = np.zeros((size, size), dtype=np.int64)
        grown[: confusion.shape[0], : confusion.shape[0]] = confusion
        confusion = grown
    size = confusion.shape[0]
    flat = labels.astype(np.int64) * size + predicted.astype(np.int64)
    return confusion + np.bincount(flat, minlength=size * size).reshape(size, size)


def macro_f1(confusion: np.ndarray | None, exclude: tuple[int, ...] = ()) -> float | None:
    """Unweighted mean of per-class F1 over the classes present in the labels or the predictions (what
    scikit-learn's `f1_score(average="macro")` averages over), less `exclude` (e.g. a token tagger's "O" tag).
    A class never seen is left out rather than counted as 0 or 1; None when no class is left."""
    if confusion is None:
        return None
    true_positive = np.diag(confusion).astype(np.float64)
    in_labels, in_predictions = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (in_labels + in_predictions) > 0
    present[[c for c in exclude if 0 <= c < len(present)]] = False
    if not present.any():
        return None
    # F1 = 2TP / (2TP + FP + FN), and 2TP + FP + FN = (row sum) + (column sum): never 0 for a present class.
    f1 = 2 * true_positive[present] / (in_labels[present] + in_predictions[present])
    return float(f1.mean())


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (scipy.stats.rankdata's "average")."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Each run of equal values: first and last position; their mean rank is (first + last) / 2 + 1.
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = (first[group] + last[group]) / 2 + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (Pearson's r of the average ranks). None when it is undefined: fewer than
    two pairs, a constant side, or NaN in either (a NaN has no rank)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt(np.sum(rx * rx) * np.sum(ry * ry))
    return float(np.sum(rx * ry) / denominator) if denominator > 0 else None


def is_classifier_output(output: np.ndarray) -> bool:
    """[N, C] scores with C > 1: top-1 class comparisons make sense."""
    return output.ndim == 2 and output.shape[1] > 1


# Token labels [N, L]: this id marks a position that carries no tag (padding, special tokens, later sub-tokens),
# the convention of Hugging Face's token-classification data.
IGNORED_TOKEN = IGNORE_LABEL


def is_token_output(output: np.ndarray, labels: np.ndarray | None) -> bool:
    """[N, L, C] scores (C > 1) for [N, L] token labels: one class per token."""
    return (
        labels is not None
        and labels.ndim == 2
        and output.ndim == 3
        and output.shape[:2] == labels.shape
        and output.shape[2] > 1
    )


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
    """Accuracy and macro F1 (with labels), top-1 agreement, cosine and SQNR between baseline and result outputs.

    With [N] labels and [N, C] scores: top-1 accuracy and macro F1 over classes. With [N, L] token labels and
    [N, L, C] scores (token classification): token accuracy (over the positions not IGNORED_TOKEN, every tag
    counted, "O" included) stands in for accuracy, so the accuracy gate works on it, and `token_f1` is the
    macro F1 over tags, leaving out `token_f1_exclude` (the "O" tag, which would swamp it). This is per-token
    F1, not seqeval's entity-span F1: it needs no BIO scheme and treats every tag alike.
    """

    token_f1_exclude: tuple[int, ...] = ()

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
    confusion_baseline: np.ndarray | None = None  # [true, predicted] counts: classes, or tags of tokens
    confusion_result: np.ndarray | None = None
    tokens: int = 0
    tokens_agree: int = 0

    def update(self, baseline: list[np.ndarray], result: list[np.ndarray], labels: np.ndarray | None) -> None:
        a, b = _flatten(baseline), _flatten(result)
        cos = row_cosines(a, b)
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
            if labels is not None and labels.ndim == 1:
                self.correct_baseline += int(np.sum(top_a == labels))
                self.correct_result += int(np.sum(top_b == labels))
                classes = baseline[0].shape[1]
                self.confusion_baseline = add_confusion(self.confusion_baseline, labels, top_a, classes)
                self.confusion_result = add_confusion(self.confusion_result, labels, top_b, classes)
                if baseline[0].shape[1] > TOP_K:
                    self.top5_counted += len(labels)
                    self.top5_baseline += _in_top_k(baseline[0], labels)
                    self.top5_result += _in_top_k(result[0], labels)
        elif is_token_output(baseline[0], labels):
            self._update_tokens(baseline[0], result[0], labels)

    def _update_tokens(self, baseline: np.ndarray, result: np.ndarray, labels: np.ndarray) -> None:
        """Token classification: each tagged position is one sample of a classifier."""
        tagged = labels != IGNORED_TOKEN
        truth, top_a, top_b = labels[tagged], baseline.argmax(axis=2)[tagged], result.argmax(axis=2)[tagged]
        classes = baseline.shape[2]
        self.confusion_baseline = add_confusion(self.confusion_baseline, truth, top_a, classes)
        self.confusion_result = add_confusion(self.confusion_result, truth, top_b, classes)
        self.tokens += len(truth)
        self.tokens_agree += int(np.sum(top_a == top_b))

    def summary(self, has_labels: bool) -> dict[str, float | int | None]:
        n = max(self.samples, 1)
        accuracy = has_labels and self.classified > 0
        with np.errstate(divide="ignore", invalid="ignore"):  # NaN outputs give a NaN SQNR: null, not "identical"
            sqnr = 10 * np.log10(self.signal_power / self.noise_power) if self.noise_power != 0 else float("inf")
        top5 = self.top5_counted if accuracy else 0
        tokens = has_labels and self.tokens > 0
        accuracy_a = self.correct_baseline / self.classified if accuracy else None
        accuracy_b = self.correct_result / self.classified if accuracy else None
        if tokens:
            accuracy_a, accuracy_b = (_trace_share(self.confusion_baseline), _trace_share(self.confusion_result))
        f1 = (
            (macro_f1(self.confusion_baseline), macro_f1(self.confusion_result))
            if accuracy and not tokens
            else (None, None)
        )
        token_f1 = (
            (
                macro_f1(self.confusion_baseline, self.token_f1_exclude),
                macro_f1(self.confusion_result, self.token_f1_exclude),
            )
            if tokens
            else (None, None)
        )
        return {
            "samples": self.samples,
            "accuracy_kind": "token" if tokens else "top-1" if accuracy else None,
            "accuracy_baseline": accuracy_a,
            "accuracy_result": accuracy_b,
            "macro_f1_baseline": f1[0],
            "macro_f1_result": f1[1],
            "token_f1_baseline": token_f1[0],
            "token_f1_result": token_f1[1],
            "tokens": self.tokens if tokens else None,
            "token_agreement": self.tokens_agree / self.tokens if tokens else None,
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


def _trace_share(confusion: np.ndarray | None) -> float | None:
    """Accuracy from confusion counts: the share on the diagonal."""
    if confusion is None or not confusion.sum():
        return None
    return float(np.trace(confusion) / confusion.sum())


def _in_top_k(scores: np.ndarray, labels: np.ndarray, k: int = TOP_K) -> int:
    top = np.argpartition(-np.asarray(scores), k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == np.asarray(labels)[:, None], axis=1)))
