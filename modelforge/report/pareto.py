"""The Pareto front of an optimize search, and the candidates that came closest when none met the constraints.

Pure functions over the plain `search` dict of report.json (trials as dicts): the report draws them, and the
search engine (modelforge.search, a layer above report/) may call `pareto_front` to mark trials "dominated",
so both agree on one definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# How the trials are ordered wherever they are listed: the winner, the finalists, then the losers.
STATUS_ORDER = {"winner": 0, "finalist": 1, "lost": 2}


def _measured(trial: Mapping[str, Any]) -> bool:
    return trial.get("latency_p99_ms") is not None and trial.get("accuracy") is not None


def pareto_front(trials: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The trials no other trial beats on both p99 latency (lower) and accuracy (higher), fastest first.

    Only trials with both figures take part (latency-screen entries have no accuracy). A trial is dominated when
    another is at least as fast and at least as accurate and strictly better on one; ties on both stay on the
    front together (neither dominates the other)."""
    measured = sorted(
        (t for t in trials if _measured(t)), key=lambda t: (t["latency_p99_ms"], -t["accuracy"], str(t.get("id")))
    )
    front: list[Mapping[str, Any]] = []
    best: float | None = None  # the highest accuracy among strictly faster trials
    index = 0
    while index < len(measured):
        # Trials at the same latency are judged together, against the strictly faster ones.
        latency = measured[index]["latency_p99_ms"]
        group = [t for t in measured[index:] if t["latency_p99_ms"] == latency]
        top = group[0]["accuracy"]  # sorted by accuracy descending within a latency
        if best is None or top > best:
            front += [t for t in group if t["accuracy"] == top]
        best = top if best is None else max(best, top)
        index += len(group)
    return front


def effective_slo_ms(search: Mapping[str, Any]) -> float | None:
    """The p99 limit in ms: the SLO as given, or the baseline's p99 divided by the asked speed-up."""
    constraints = search.get("constraints") or {}
    if constraints.get("latency_p99_ms") is not None:
        return float(constraints["latency_p99_ms"])
    speedup = constraints.get("speedup")
    baseline = (search.get("baseline") or {}).get("latency_p99_ms")
    if speedup and baseline is not None:
        return float(baseline) / float(speedup)
    return None


def misses(trial: Mapping[str, Any], search: Mapping[str, Any]) -> list[str]:
    """What `trial` misses of the constraints, one short phrase each (empty: it meets every measured one)."""
    out = []
    slo = effective_slo_ms(search)
    p99 = trial.get("latency_p99_ms")
    if slo is not None and p99 is not None and p99 > slo:
        out.append(f"p99 {p99:.3g} ms > {slo:.3g} ms")
    limit = (search.get("constraints") or {}).get("max_accuracy_drop")
    drop = trial.get("accuracy_drop_pp")
    if limit is not None and drop is not None and drop > limit:
        out.append(f"drop {drop:.2f} pp > {limit:g} pp")
    return out


def _shortfall(trial: Mapping[str, Any], search: Mapping[str, Any]) -> tuple[int, float]:
    """(constraints missed or not measured, summed relative miss): smaller is closer."""
    slo = effective_slo_ms(search)
    limit = (search.get("constraints") or {}).get("max_accuracy_drop")
    unmeasured, miss = 0, 0.0
    p99, drop = trial.get("latency_p99_ms"), trial.get("accuracy_drop_pp")
    if slo is not None:
        if p99 is None:
            unmeasured += 1
        else:
            miss += max(0.0, p99 / slo - 1)
    if limit is not None:
        if drop is None:
            unmeasured += 1
        else:
            miss += max(0.0, drop - limit) / max(limit, 1.0)
    return unmeasured, miss


def closest_candidates(search: Mapping[str, Any], count: int = 3) -> list[Mapping[str, Any]]:
    """The `count` trials that came nearest to meeting every constraint (shown when nothing met them):
    fully measured trials first, then by how far they miss (relative excess over the SLO plus the accuracy
    drop's excess over its limit)."""
    trials: Sequence[Mapping[str, Any]] = search.get("trials") or []
    ranked = sorted(
        (t for t in trials if t.get("latency_p99_ms") is not None),
        key=lambda t: (_shortfall(t, search), str(t.get("id"))),
    )
    return ranked[:count]


def ordered_trials(trials: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The winner first, then finalists, then the trials that lost (each group in the search's order)."""
    return sorted(trials, key=lambda t: STATUS_ORDER.get(str(t.get("status")), 3))
