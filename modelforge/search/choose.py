"""The winner: among the finalists that meet every constraint, the best by the objective; ties (within the
eval data's resolution) go to less pruning, then fewer changes from the original. Pruning is spent only to meet
the latency goal: the engine does not even train pruned models when an unpruned form already meets everything
and accuracy is the objective."""

from __future__ import annotations

from modelforge.search.finalists import Candidate
from modelforge.search.screen import Goal

# Accuracies closer than this (a fraction: 0.1 pp) are a tie: the eval set cannot tell them apart.
ACCURACY_TIE = 0.001


def constraint_misses(c: Candidate, goal: Goal, base_p50: float, max_drop: float | None) -> list[str]:
    """Why a measured finalist misses the constraints (empty: it meets every one)."""
    misses = []
    if c.p50 is None or c.p99 is None:
        return ["not measured"]
    bounded = c.p99_bound is not None
    latency = goal.misses(
        c.p50, c.p99_bound if bounded else c.p99, base_p50, p99_label="p99 bound" if bounded else "p99"
    )
    if latency:
        misses.append(latency)
    if max_drop is not None and (c.accuracy_drop_pp is None or c.accuracy_drop_pp > max_drop + 1e-9):
        drop = "n/a" if c.accuracy_drop_pp is None else f"{c.accuracy_drop_pp:.2f}"
        misses.append(f"accuracy drop {drop} pp > {max_drop:g} pp")
    return misses


def sort_key(c: Candidate, objective: str) -> tuple:
    ties = (c.form.ratio, c.changes, c.id)
    if objective == "latency":
        return (c.p99, *ties)
    if objective == "size":
        return (c.size_bytes, *ties)
    return (-round((c.accuracy or 0.0) / ACCURACY_TIE), *ties)


def choose(
    candidates: list[Candidate], goal: Goal, base_p50: float, max_drop: float | None, objective: str
) -> Candidate | None:
    """Sets each finalist's verdict (lost_because + a one-line detail) and returns the winner, or None."""
    eligible = []
    for c in candidates:
        if c.lost is not None:
            continue
        c.misses = constraint_misses(c, goal, base_p50, max_drop)
        if c.misses:
            c.lost = "slo" if any("SLO" in m or "speed-up" in m for m in c.misses) else "accuracy_gate"
            c.detail = "; ".join(c.misses)
        else:
            eligible.append(c)
    eligible.sort(key=lambda c: sort_key(c, objective))
    winner = eligible[0] if eligible else None
    for c in eligible[1:]:
        c.lost = "dominated"
        c.detail = f"meets every constraint; {winner.id} is better by {objective} (or ties with less change)"
    return winner
