"""The `search` section of report.json (and search.json): the plain dict whose shape is the contract with the
report renderers (docs: /work/notes/wave5-plan.md, "the `search` section"). report/ reads it; it never imports
this layer."""

from __future__ import annotations

from typing import Any

from modelforge.search.finalists import Candidate
from modelforge.search.screen import Screened
from modelforge.search.trials import TrialResult

VERSION = 1


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def screen_row(row: Screened) -> dict[str, Any]:
    form = row.form
    return {
        "id": f"screen-{form.name}",
        "prune_ratio": form.ratio,
        "fine_tune": "none",
        "precision": form.precision,
        "runtime": form.runtime,
        "epochs": None,
        "latency_p50_ms": _r(row.p50),
        "latency_p99_ms": _r(row.p99),
        "accuracy": None,
        "accuracy_drop_pp": None,
        "size_bytes": row.size_bytes,
        "status": "lost",
        "lost_because": "slo",
        "detail": f"latency screen (pruned, not trained): {row.dropped}",
        "cached": False,
    }


def trial_row(trial: TrialResult, base_accuracy: float | None, status: str, lost: str | None, detail: str) -> dict:
    accuracy = trial.accuracy
    return {
        "id": trial.spec.id,
        "prune_ratio": trial.spec.ratio,
        "fine_tune": trial.spec.fine_tune,
        "precision": "fp32",
        "runtime": "torch",
        "epochs": len(trial.history) or None,
        "latency_p50_ms": None,
        "latency_p99_ms": None,
        "accuracy": _r(accuracy),
        "accuracy_drop_pp": _r((base_accuracy - accuracy) * 100, 3)
        if accuracy is not None and base_accuracy is not None
        else None,
        "size_bytes": None,
        "status": status,
        "lost_because": lost,
        "detail": detail,
        "cached": trial.cached,
        "node": trial.node,
    }


def candidate_row(c: Candidate, winner: Candidate | None, cached: bool) -> dict[str, Any]:
    won = c is winner
    return {
        "id": c.id,
        "prune_ratio": c.form.ratio,
        "fine_tune": c.fine_tune,
        "precision": c.form.precision,
        "runtime": c.form.runtime,
        "epochs": c.epochs,
        "latency_p50_ms": _r(c.p50),
        "latency_p99_ms": _r(c.p99),
        "latency_p99_bound_ms": _r(c.p99_bound),
        "accuracy": _r(c.accuracy),
        "accuracy_drop_pp": _r(c.accuracy_drop_pp, 3),
        "size_bytes": c.size_bytes,
        "status": "winner" if won else "finalist",
        "lost_because": None if won else c.lost,
        "detail": "meets every constraint; best by the objective" if won else c.detail,
        "cached": cached,
    }


def search_record(
    *,
    objective: str,
    constraints: dict[str, Any],
    measured_on: dict[str, Any],
    baseline: dict[str, Any],
    space: dict[str, Any],
    stage_seconds: dict[str, float],
    ray: dict[str, Any] | None,
    trials: list[dict[str, Any]],
    winner: str | None,
) -> dict[str, Any]:
    return {
        "version": VERSION,
        "objective": objective,
        "constraints": constraints,
        "measured_on": measured_on,
        "baseline": baseline,
        "space": space,
        "stage_seconds": {k: round(v, 3) for k, v in stage_seconds.items()},
        "ray": ray,
        "trials": trials,
        "winner": winner,
        "passed": winner is not None,
    }
