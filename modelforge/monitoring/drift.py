"""Score new data against a baseline: PSI and KS per input feature, and the shift of top-1 confidence.

PSI (population stability index) compares the share of values in the baseline's decile bins: < 0.1 stable,
0.1-0.2 a moderate shift, > 0.2 a significant one (the usual reading, and the default threshold). KS is the
largest gap between the baseline's CDF (its 101-point percentile sketch) and the new data's, with the
asymptotic two-sample p-value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError
from modelforge.monitoring.baseline import BASELINE_VERSION, MAX_BASELINE_SAMPLES, FeatureCollector
from modelforge.monitoring.features import top1_confidence

# Empty bins get this share, so PSI stays finite (the common convention).
PSI_FLOOR = 1e-4


def psi(histogram: dict[str, Any], values: np.ndarray) -> float:
    """PSI of `values` against a baseline histogram (inner bin edges and counts)."""
    edges = np.asarray(histogram["inner_edges"], dtype=np.float64)
    expected = np.asarray(histogram["counts"], dtype=np.float64)
    actual = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1).astype(np.float64)
    expected = np.maximum(expected / max(expected.sum(), 1.0), PSI_FLOOR)
    actual = np.maximum(actual / max(actual.sum(), 1.0), PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _kolmogorov_survival(statistic: float) -> float:
    """P(K > statistic) for the Kolmogorov distribution (the series converges fast for statistic > 0.2)."""
    if statistic < 0.2:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * statistic * statistic) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))


def ks(sketch: list[float], baseline_count: int, values: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic against the baseline's percentile sketch, and its asymptotic p-value."""
    reference = np.asarray(sketch, dtype=np.float64)
    levels = np.linspace(0, 1, len(reference))
    ordered = np.sort(values)
    grid = np.union1d(reference, ordered[:: max(1, len(ordered) // 1000)])
    base_cdf = np.interp(grid, reference, levels, left=0.0, right=1.0)
    new_cdf = np.searchsorted(ordered, grid, side="right") / len(ordered)
    statistic = float(np.max(np.abs(base_cdf - new_cdf)))
    n_eff = baseline_count * len(ordered) / (baseline_count + len(ordered))
    return statistic, _kolmogorov_survival((math.sqrt(n_eff) + 0.12 + 0.11 / math.sqrt(n_eff)) * statistic)


def load_baseline(path: Path) -> dict[str, Any]:
    """Read and check a baseline_stats.json; every problem names the file and the field."""
    if not path.is_file():
        raise InputError(f"baseline {path} not found")
    try:
        baseline = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"baseline {path}: not valid JSON ({exc})") from None
    if not isinstance(baseline, dict) or baseline.get("baseline_version") != BASELINE_VERSION:
        raise InputError(f"baseline {path}: baseline_version: expected {BASELINE_VERSION} (a baseline_stats.json)")
    inputs = baseline.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError(f"baseline {path}: inputs: expected a non-empty list of input statistics")
    for index, spec in enumerate(inputs):
        for key in ("name", "dtype", "sample_shape", "features"):
            if not isinstance(spec, dict) or key not in spec:
                raise InputError(f"baseline {path}: inputs[{index}].{key}: required field is missing")
    return baseline


def _input_spec(baseline: dict[str, Any]):
    from modelforge.model.artifact import IOSpec, TensorSpec

    inputs = tuple(
        TensorSpec(spec["name"], spec["dtype"], (None, *spec["sample_shape"])) for spec in baseline["inputs"]
    )
    return IOSpec(inputs=inputs, outputs=())


def bind_to_baseline(baseline: dict[str, Any], data_path: Path):
    """The new data, checked against the inputs the baseline was made for (names, shapes, dtypes)."""
    from modelforge.data import bind, open_dataset
    from modelforge.recipe.schema import DataSource

    io = _input_spec(baseline)
    return bind(open_dataset(DataSource(path=data_path), io.inputs[0].shape), io, "drift data")


def score_features(baseline: dict[str, Any], data, seed: int = 0) -> list[dict[str, Any]]:
    """PSI and KS of every monitored feature of every input, worst (highest PSI) first."""
    data = data.window(0, min(data.num_samples, MAX_BASELINE_SAMPLES))
    collectors = {spec["name"]: FeatureCollector(data.num_samples, seed) for spec in baseline["inputs"]}
    for batch in data.batches(64):
        for name, values in batch.items():
            collectors[name].add(values)
    if data.num_samples == 0:
        raise InputError(f"drift data {data.dataset.path}: no samples")
    scores = []
    for spec in baseline["inputs"]:
        values = np.concatenate(collectors[spec["name"]].parts, axis=1)
        for feature in spec["features"]:
            if feature.get("count", 0) == 0:
                continue
            row = values[feature["index"]]
            row = row[np.isfinite(row)]
            statistic, p_value = ks(feature["sketch"], feature["count"], row)
            scores.append(
                {
                    "input": spec["name"],
                    "feature": feature["index"],
                    "psi": psi(feature["histogram"], row),
                    "ks": statistic,
                    "ks_p_value": p_value,
                    "mean_baseline": feature["mean"],
                    "mean_now": float(row.mean()),
                }
            )
    return sorted(scores, key=lambda s: s["psi"], reverse=True)


def score_confidence(baseline: dict[str, Any], backend: Any, data) -> dict[str, Any] | None:
    """How top-1 confidence moved: mean shift, PSI and KS against the baseline's evaluation (or calibration)
    confidence. A model growing less sure of its answers is the first sign of degradation without labels."""
    recorded = baseline.get("confidence") or {}
    # Eval data is what the model was judged on; calibration data (fit to the model's ranges) inflates confidence.
    source = "evaluation" if recorded.get("evaluation") else "calibration"
    reference = recorded.get(source)
    if reference is None:
        return None
    from modelforge.monitoring.baseline import whole_batches_of

    batch_size = int(baseline.get("batch_size") or 64)
    data = whole_batches_of(data, MAX_BASELINE_SAMPLES, batch_size)
    values = np.concatenate([top1_confidence(backend.run(feeds)[0]) for feeds in data.batches(batch_size)])
    statistic, p_value = ks(reference["sketch"], reference["count"], values)
    return {
        "reference": f"the baseline's {source} data",
        "mean_baseline": reference["mean"],
        "mean_now": float(values.mean()),
        "mean_shift": float(values.mean() - reference["mean"]),
        "psi": psi(reference["histogram"], values),
        "ks": statistic,
        "ks_p_value": p_value,
    }


# A rise in the escalation share is flagged when it is both significant (one-sided two-proportion z-test,
# z above this: p < 0.001) and larger than the caller's limit in points: the test alone flags a 0.3-point rise
# on a million requests, the limit alone flags noise on fifty.
ESCALATION_Z = 3.09


def score_escalation(baseline: dict[str, Any], backend: Any, data) -> dict[str, Any] | None:
    """How the cascade's escalation share moved against the baseline's (None without an `escalation` field or
    a model that has its output)."""
    recorded = baseline.get("escalation")
    if not isinstance(recorded, dict) or recorded.get("output") not in getattr(backend, "output_names", ()):
        return None
    index = list(backend.output_names).index(recorded["output"])
    data = data.window(0, min(data.num_samples, MAX_BASELINE_SAMPLES))
    flags = np.concatenate([np.asarray(backend.run(feeds)[index], dtype=bool).ravel() for feeds in data.batches(64)])
    n0, n1 = int(recorded.get("samples") or 0), int(flags.size)
    p0, p1 = float(recorded.get("share") or 0.0), float(flags.mean()) if flags.size else 0.0
    pooled = (p0 * n0 + p1 * n1) / max(n0 + n1, 1)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / max(n0, 1) + 1 / max(n1, 1)))
    z = (p1 - p0) / spread if spread > 0 else (0.0 if p1 == p0 else math.copysign(math.inf, p1 - p0))
    return {
        "share_baseline": p0,
        "share_now": p1,
        "rise_pp": (p1 - p0) * 100,
        "samples_baseline": n0,
        "samples_now": n1,
        "z": z,
        "p_value": 0.5 * math.erfc(z / math.sqrt(2)) if math.isfinite(z) else (0.0 if z > 0 else 1.0),
        "significant": bool(z > ESCALATION_Z),
    }
