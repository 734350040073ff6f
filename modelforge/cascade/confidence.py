"""How sure the small model is of each row: one number in [0, 1] per sample, higher = surer, so every measure
shares one threshold semantics (a row escalates when its confidence is below the threshold).

- `max-prob`: the top softmax probability (the default: cheap, and what most serving stacks log);
- `margin`: top-1 minus top-2 probability (ties between two classes are what a cascade should escalate);
- `entropy`: 1 - H(p) / log(C), the entropy normalised to [0, 1] and flipped (a flat distribution is 0).

The same formulas are built into the cascade graph (graph.py), so the curve computed here is the graph's.
"""

from __future__ import annotations

import numpy as np

MEASURES = ("max-prob", "margin", "entropy")
# Rows of a softmax output sum to 1 within this (float32 rounding over a few thousand classes stays far below).
SUM_TOLERANCE = 1e-3
ENTROPY_EPS = 1e-12


def is_probabilities(outputs: np.ndarray) -> bool:
    """True when the rows already are a probability distribution (the model ends with a softmax)."""
    values = np.asarray(outputs, dtype=np.float64)
    if values.size == 0 or values.min() < 0 or values.max() > 1:
        return False
    return bool(np.all(np.abs(values.sum(axis=-1) - 1.0) <= SUM_TOLERANCE))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float32) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def confidence(outputs: np.ndarray, measure: str = "max-prob", probabilities: bool | None = None) -> np.ndarray:
    """Per-row confidence in [0, 1] of [N, C] class scores (logits or probabilities: `probabilities`, or
    detected from the row sums when None)."""
    if measure not in MEASURES:
        raise ValueError(f"confidence measure {measure!r}: expected one of {', '.join(MEASURES)}")
    if probabilities is None:
        probabilities = is_probabilities(outputs)
    probs = np.asarray(outputs, dtype=np.float32) if probabilities else softmax(outputs)
    if measure == "max-prob":
        return probs.max(axis=-1)
    if measure == "margin":
        top2 = np.sort(probs, axis=-1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    classes = probs.shape[-1]
    entropy = -np.sum(probs * np.log(np.maximum(probs, ENTROPY_EPS)), axis=-1)
    return np.clip(1.0 - entropy / np.log(classes), 0.0, 1.0).astype(np.float32)
