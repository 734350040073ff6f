"""The drift report: thresholds applied to the scores, as JSON a monitor stores and a verdict a job exits on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.monitoring.drift import (
    bind_to_baseline,
    load_baseline,
    score_confidence,
    score_escalation,
    score_features,
)


def model_beside(baseline_path: Path, named: Any) -> Path | None:
    """The model a baseline file names, only inside the baseline's own folder: the file's contents never choose
    a path elsewhere (no absolute names, no `..`, no links)."""
    if not isinstance(named, str) or not named or Path(named).is_absolute():
        return None
    parts = Path(named).parts
    if any(part in ("..", ".", "") for part in parts):
        return None
    folder = baseline_path.parent
    candidate, current = folder / named, folder
    for part in parts:
        current = current / part
        if current.is_symlink():
            return None
    return candidate if candidate.is_file() else None


def drift_report(
    baseline_path: Path,
    data_path: Path,
    *,
    model_path: Path | None = None,
    max_psi: float = 0.2,
    max_ks: float | None = None,
    max_confidence_drop: float | None = None,
    max_escalation_rise: float = 5.0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Score `data_path` against the baseline; `model_path` (default: the model named beside the baseline)
    adds the confidence shift."""
    baseline = load_baseline(baseline_path)
    data = bind_to_baseline(baseline, data_path)
    features = score_features(baseline, data)
    if model_path is None and baseline.get("model"):
        model_path = model_beside(baseline_path, baseline["model"])
    confidence = escalation = None
    if model_path is not None and (baseline.get("confidence") or baseline.get("escalation")):
        from modelforge.runtimes.base import open_backend

        backend = open_backend(model_path, threads=threads, stage="drift")
        if baseline.get("confidence"):
            confidence = score_confidence(baseline, backend, data)
        escalation = score_escalation(baseline, backend, data)
    checks = [
        _check("max_psi", max_psi, max((f["psi"] for f in features), default=0.0)),
    ]
    if max_ks is not None:
        checks.append(_check("max_ks", max_ks, max((f["ks"] for f in features), default=0.0)))
    if confidence is not None:  # every score with a threshold decides: the confidence's PSI (and KS) too
        checks.append(_check("max_confidence_psi", max_psi, confidence["psi"]))
        if max_ks is not None:
            checks.append(_check("max_confidence_ks", max_ks, confidence["ks"]))
    if max_confidence_drop is not None:
        drop = -confidence["mean_shift"] if confidence else None
        checks.append(_check("max_confidence_drop", max_confidence_drop, drop))
    if baseline.get("escalation"):  # a cascade's baseline: a significant rise over the limit (pp) fails
        checks.append(_escalation_check(max_escalation_rise, escalation))
    return {
        "drift_version": 1,
        "baseline": str(baseline_path),
        "data": str(data_path),
        "samples": data.num_samples,
        "model": str(model_path) if model_path is not None else None,
        "features": features,
        "drifted_features": [f for f in features if f["psi"] > max_psi],
        "confidence": confidence,
        "escalation": escalation,
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
    }


def _check(name: str, threshold: float, value: float | None) -> dict[str, Any]:
    # An unmeasurable check (no model for the confidence) fails rather than passes silently.
    return {"name": name, "threshold": threshold, "value": value, "passed": value is not None and value <= threshold}


def _escalation_check(max_rise_pp: float, escalation: dict[str, Any] | None) -> dict[str, Any]:
    """Passes unless the escalation share rose by more than `max_rise_pp` points AND significantly (z-test)."""
    if escalation is None:
        return _check("max_escalation_rise_pp", max_rise_pp, None)
    rise = escalation["rise_pp"]
    failed = rise > max_rise_pp and escalation["significant"]
    return {"name": "max_escalation_rise_pp", "threshold": max_rise_pp, "value": rise, "passed": not failed}
