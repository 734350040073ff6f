"""Sparsity schedules."""

from __future__ import annotations


def polynomial_targets(final: float, steps: int, power: int = 3) -> list[float]:
    """Gradual pruning (Zhu & Gupta 2017): s_k = final * (1 - (1 - k/steps)^power), k = 1..steps.

    Early steps remove much while the network has redundancy, later ones little; one step is one-shot."""
    steps = max(1, steps)
    return [final * (1 - (1 - k / steps) ** power) for k in range(1, steps + 1)]
