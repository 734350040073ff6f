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


def slo_ms(search: Mapping[str, Any]) -> float | None:
    """The p99 latency limit in ms (None when the search was given a speed-up instead)."""
    value = (search.get("constraints") or {}).get("latency_p99_ms")
    return None if value is None else float(value)


def speedup_p50_ms(search: Mapping[str, Any]) -> float | None:
    """The p50 a trial must reach to meet the asked speed-up (original p50 / trial p50 >= speed-up)."""
    speedup = (search.get("constraints") or {}).get("speedup")
    baseline = (search.get("baseline") or {}).get("latency_p50_ms")
    return None if not speedup or baseline is None else float(baseline) / float(speedup)


def _limits(search: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(trial field, most it may be) for each latency constraint."""
    out = []
    if (slo := slo_ms(search)) is not None:
        out.append(("latency_p99_ms", slo))
    if (p50 := speedup_p50_ms(search)) is not None:
        out.append(("latency_p50_ms", p50))
    return out


def misses(trial: Mapping[str, Any], search: Mapping[str, Any]) -> list[str]:
    """What `trial` misses of the constraints, one short phrase each (empty: it meets every measured one)."""
    out = []
    for field, limit in _limits(search):
        value = trial.get(field)
        if value is not None and value > limit:
            out.append(f"{field.split('_')[1]} {value:.3g} ms > {limit:.3g} ms")
    limit = (search.get("constraints") or {}).get("max_accuracy_drop")
    drop = trial.get("accuracy_drop_pp")
    if limit is not None and drop is not None and drop > limit:
        out.append(f"drop {drop:.2f} pp > {limit:g} pp")
    return out


def _shortfall(trial: Mapping[str, Any], search: Mapping[str, Any]) -> tuple[int, float]:
    """(constraints not measured, summed relative miss): smaller is closer."""
    unmeasured, miss = 0, 0.0
    for field, limit in _limits(search):
        if trial.get(field) is None:
            unmeasured += 1
        else:
            miss += max(0.0, trial[field] / limit - 1)
    limit = (search.get("constraints") or {}).get("max_accuracy_drop")
    drop = trial.get("accuracy_drop_pp")
    if limit is not None:
        if drop is None:
            unmeasured += 1
        else:
            miss += max(0.0, drop - limit) / max(limit, 1.0)
    return unmeasured, miss


def closest_candidates(search: Mapping[str, Any], count: int = 3) -> list[Mapping[str, Any]]:
    """The `count` trials that came nearest to meeting every constraint (shown when nothing met them):
    fully measured trials first, then by how far they miss (relative excess over each latency limit plus the
    accuracy drop's excess over its limit)."""
    trials: Sequence[Mapping[str, Any]] = search.get("trials") or []
    ranked = sorted(
        (t for t in trials if t.get("latency_p99_ms") is not None or t.get("latency_p50_ms") is not None),
        key=lambda t: (_shortfall(t, search), str(t.get("id"))),
    )
    return ranked[:count]


def ordered_trials(trials: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The winner first, then finalists, then the trials that lost (each group in the search's order)."""
    return sorted(trials, key=lambda t: STATUS_ORDER.get(str(t.get("status")), 3))


NUMBER_FIELDS = (
    "prune_ratio",
    "epochs",
    "latency_p50_ms",
    "latency_p99_ms",
    "accuracy",
    "accuracy_drop_pp",
    "size_bytes",
)
TEXT_FIELDS = ("fine_tune", "precision", "runtime", "status", "lost_because", "detail")


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def search_problem(search: Any) -> str | None:
    """What is wrong with a stored `search` section (report.json is a file someone may hand over), as
    'search.FIELD: expected ...'; None when the renderers can read it."""
    if not isinstance(search, dict):
        return "search: expected an object"
    for key in ("constraints", "baseline", "stage_seconds", "measured_on", "ray"):
        if search.get(key) is not None and not isinstance(search[key], dict):
            return f"search.{key}: expected an object"
    for section in ("constraints", "baseline", "stage_seconds"):
        for key, value in (search.get(section) or {}).items():
            if key not in ("batch_size", "threads") and not _number(value):
                return f"search.{section}.{key}: expected a number or null"
    trials = search.get("trials")
    if not isinstance(trials, list):
        return "search.trials: expected a list"
    for index, trial in enumerate(trials):
        if not isinstance(trial, dict) or not isinstance(trial.get("id"), str):
            return f"search.trials[{index}]: expected an object with a text id"
        for key in NUMBER_FIELDS:
            if not _number(trial.get(key)):
                return f"search.trials[{index}].{key}: expected a number or null"
        for key in TEXT_FIELDS:
            if trial.get(key) is not None and not isinstance(trial[key], str):
                return f"search.trials[{index}].{key}: expected text or null"
    if search.get("winner") is not None and not isinstance(search["winner"], str):
        return "search.winner: expected a trial id or null"
    return None
