"""Which metrics a model's task calls for, and the sentence-pair similarity metrics of embedding models.

The task comes from the model's Hugging Face config where there is one (`HFInfo.task`), else from the labels'
shape ([N, L] labels: token classification). Classification and token metrics are accumulated by
`ComparisonAccumulator`; the pair metrics here need every pair's two embeddings, so they keep the embeddings
(rows of the eval set, float32) until the end.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelforge.measure.metrics import row_cosines, spearman

TOKEN_CLASSIFICATION = "token-classification"
FEATURE_EXTRACTION = "feature-extraction"
# Tag names that mean "no entity": left out of the token macro F1 (accuracy still counts them).
NO_ENTITY_TAGS = ("o", "outside")


def metric_task(hf_task: str | None, labels: np.ndarray | None) -> str | None:
    """The task the metrics follow: the model's own when known, else what the labels' shape says (None: no
    labels and no config to tell; the output comparison alone)."""
    if hf_task:
        return hf_task
    if labels is None:
        return None
    return TOKEN_CLASSIFICATION if labels.ndim == 2 else "classification"


def no_entity_tags(id2label: Mapping[int, str] | None) -> tuple[int, ...]:
    """Ids of the "O" (outside any entity) tag: it covers most tokens and would swamp the token F1."""
    return tuple(sorted(i for i, name in (id2label or {}).items() if str(name).strip().lower() in NO_ENTITY_TAGS))


def sentence_embedding(outputs: list[np.ndarray], feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """One vector per sample: the first [N, D] output (a pooled sentence embedding), else the first [N, L, H]
    output mean-pooled over the tokens the attention mask keeps (over all tokens when there is no mask)."""
    for output in outputs:
        if output.ndim == 2:
            return np.asarray(output, dtype=np.float32)
    hidden = np.asarray(next(o for o in outputs if o.ndim == 3), dtype=np.float32)
    mask = feeds.get("attention_mask")
    if mask is None or mask.shape != hidden.shape[:2]:
        return hidden.mean(axis=1)
    weights = np.asarray(mask, dtype=np.float32)[:, :, None]
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)


def has_embedding(outputs: list[np.ndarray]) -> bool:
    """An output a sentence embedding can be read from ([N, D] or [N, L, H])."""
    return any(o.ndim in (2, 3) for o in outputs)


class PairSimilarity:
    """Sentence pairs: samples 0..N-1 are the first texts, N..2N-1 the second ones (the text data's layout).

    For each model the pair similarity is cos(A_i, B_i); the result's similarities are ranked against the
    baseline's (`pair_spearman_vs_original`: does quantization keep the order of similarities?) and, with gold
    scores, each model's against the gold (`pair_spearman_baseline` / `_result`, the STS-style figure)."""

    def __init__(self, pair_count: int, gold: np.ndarray | None = None):
        self.pair_count = pair_count
        self.gold = None if gold is None else np.asarray(gold, dtype=np.float64)
        self.baseline: list[np.ndarray] = []
        self.result: list[np.ndarray] = []

    def update(self, baseline: np.ndarray, result: np.ndarray) -> None:
        self.baseline.append(np.asarray(baseline, dtype=np.float32))
        self.result.append(np.asarray(result, dtype=np.float32))

    def similarities(self, rows: list[np.ndarray]) -> np.ndarray | None:
        embeddings = np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)
        n = self.pair_count
        if n == 0 or len(embeddings) != 2 * n:
            return None
        return row_cosines(embeddings[:n].reshape(n, -1), embeddings[n:].reshape(n, -1))

    def summary(self) -> dict[str, float | int | None]:
        sim_a, sim_b = self.similarities(self.baseline), self.similarities(self.result)
        if sim_a is None or sim_b is None:
            return {}
        gold = self.gold if self.gold is not None and len(self.gold) == self.pair_count else None
        return {
            "pairs": self.pair_count,
            "pair_spearman_vs_original": spearman(sim_a, sim_b),
            "pair_spearman_baseline": spearman(sim_a, gold) if gold is not None else None,
            "pair_spearman_result": spearman(sim_b, gold) if gold is not None else None,
        }
