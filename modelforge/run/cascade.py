"""`modelforge cascade`: the glue between the loaded models (run/inputs: the one way a user's model becomes ONNX),
the cascade engine (cascade/), monitoring's baseline and the output folder (run/output: staged, atomic).

Order: check the output and the settings; load and convert both models; check they are compatible; run both
on the eval data; the curve; build the graph; measure it at several thresholds interleaved with both models;
choose; check the written graph row by row (and on OpenVINO); baseline_stats.json; report; move into place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError, PassError
from modelforge.progress import Progress

# Escalation shares whose nearest curve points are measured (besides the chosen threshold).
MEASURED_SHARES = (0.0, 0.1, 0.25, 0.5, 1.0)
# --max-mean-latency-ms chooses among measured thresholds only: a finer grid of escalation shares.
LATENCY_RULE_SHARES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
EVAL_BATCH = 64
CURVE_IN_METADATA = 50  # points of the curve kept in the model's metadata (the report has them all)


@dataclass
class CascadeSettings:
    small: Path
    large: Path
    eval_data: Path
    output: Path
    confidence: str = "max-prob"
    max_accuracy_drop: float | None = None  # pt; the default rule (0.5) when no other is given
    max_mean_latency_ms: float | None = None
    threshold: float | None = None
    batch: int = 1
    threads: int | None = None
    target: str = "onnxruntime"
    force: bool = False
    latency_seconds: float = 10.0
    seed: int = 0
    trust_model_code: bool = False  # only from the command line: TorchScript / SavedModel code runs when loaded

    def rule(self) -> str:
        if self.threshold is not None:
            return "threshold"
        return "max_mean_latency_ms" if self.max_mean_latency_ms is not None else "max_accuracy_drop"

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def check_settings(settings: CascadeSettings) -> None:
    from modelforge.cascade.confidence import MEASURES

    if settings.confidence not in MEASURES:
        raise InputError(f"--confidence {settings.confidence}: expected one of {', '.join(MEASURES)}")
    if settings.threshold is not None and not 0 < settings.threshold < 1:
        raise InputError(f"--threshold {settings.threshold}: expected a value in (0, 1), exclusive")
    given = [
        settings.threshold is not None,
        settings.max_mean_latency_ms is not None,
        settings.max_accuracy_drop is not None,
    ]
    if sum(given) > 1:
        raise InputError("give one of --threshold, --max-mean-latency-ms, --max-accuracy-drop")
    if settings.rule() == "max_accuracy_drop" and settings.max_accuracy_drop is None:
        settings.max_accuracy_drop = 0.5
    if settings.target not in ("onnxruntime", "openvino"):
        raise InputError(f"--target {settings.target}: expected onnxruntime or openvino")
    if settings.batch < 1:
        raise InputError(f"--batch {settings.batch}: expected a positive batch size")


def model_path(path: Path, role: str) -> Path:
    """An earlier modelforge output folder stands for the model.onnx in it; any other path is loaded as given."""
    from modelforge.manifest import is_modelforge_output

    if path.is_dir() and is_modelforge_output(path) and (path / "model.onnx").is_file():
        return path / "model.onnx"
    if not path.exists():
        raise InputError(f"--{role} {path}: not found")
    return path


def _recipe(settings: CascadeSettings, model: Path):
    from modelforge.recipe.load import recipe_from_dict

    raw = {
        "model": {"path": str(model)},
        "data": {"eval_data": {"path": str(settings.eval_data)}},
        "output": {"dir": str(settings.output), "force": settings.force},
        "seed": settings.seed,
    }
    return recipe_from_dict(raw, source="flags")


def run_cascade(settings: CascadeSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Build, measure and write the cascade; returns the report (its `passed` says whether the rule was met)."""
    from modelforge.run.output import check_output_dir, staged_output

    progress = progress or Progress()
    check_settings(settings)
    small_path, large_path = model_path(settings.small, "small"), model_path(settings.large, "large")
    check_output_dir(_recipe(settings, small_path))  # --force never moves aside a folder holding either model
    out = check_output_dir(_recipe(settings, large_path))
    with staged_output(out) as staging:
        report = _build(settings, small_path, large_path, staging.workdir, staging.folder, progress)
        staging.move_into_place(extending=False)
    return report


@dataclass
class Loaded:
    """One model as the run uses it: the user's form, its ONNX form (converted once), the convert stages."""

    source: Any
    baseline: Any
    stages: list[dict[str, Any]]
    data: Any  # run.inputs.RunData: the eval file opened once, hashed once


def _load(settings: CascadeSettings, path: Path, workdir: Path, role: str) -> Loaded:
    """The model loaded and converted to ONNX the way every run does it (model.loader + run.inputs.convert);
    the data is bound only after both models are known to be compatible, so a mismatch names both models."""
    from modelforge.model.loader import load_model
    from modelforge.run.inputs import RunData, convert

    recipe = _recipe(settings, path)
    data = RunData(recipe)
    folder = workdir / role
    folder.mkdir()
    try:
        source = load_model(path, trust_code=settings.trust_model_code)
        data.huggingface = source.huggingface
        baseline, stages = source, []
        if source.format != "onnx":
            baseline, stage = convert(source, folder / "00-convert", recipe, data)
            stages.append(stage)
    except InputError as exc:
        if exc.message.startswith((f"--{role}", "model ")):
            raise
        raise InputError(f"--{role}: {exc.message}", hint=exc.hint) from None
    return Loaded(source, baseline, stages, data)


def _bind_eval(loaded: Loaded, settings: CascadeSettings, classes: int):
    eval_data = loaded.data.bound(loaded.data.recipe.data.eval_data, loaded.baseline, "eval data")
    labels = eval_data.labels()
    if labels is not None and (labels.ndim != 1 or labels.min() < 0 or labels.max() >= classes):
        raise InputError(
            f"eval data {settings.eval_data}: labels must be one class id in 0..{classes - 1} per sample "
            f"(got shape {list(labels.shape)}, range {labels.min()}..{labels.max()})"
        )
    return eval_data, labels


@dataclass
class Observed:
    """Both models on the eval data, and the curve they give: what every later step reads."""

    small_out: np.ndarray
    large_out: np.ndarray
    small_probabilities: bool  # the output already is a softmax (rows sum to 1)
    large_probabilities: bool
    conf: np.ndarray
    labels: np.ndarray | None
    points: list[Any]  # cascade.curve.CurvePoint, by threshold

    @property
    def small_pred(self) -> np.ndarray:
        return self.small_out.argmax(-1)

    @property
    def large_pred(self) -> np.ndarray:
        return self.large_out.argmax(-1)

    def accuracy(self, role: str) -> float | None:
        pred = self.small_pred if role == "small" else self.large_pred
        return float((pred == self.labels).mean()) if self.labels is not None else None


def _observe(settings: CascadeSettings, small: Any, large: Any, eval_data: Any, labels: np.ndarray | None) -> Observed:
    from modelforge.cascade.confidence import confidence, is_probabilities
    from modelforge.cascade.curve import cascade_curve

    small_out = np.concatenate([small.run(feeds)[0] for feeds in eval_data.batches(EVAL_BATCH)])
    large_out = np.concatenate([large.run(feeds)[0] for feeds in eval_data.batches(EVAL_BATCH)])
    small_probs = is_probabilities(small_out)
    conf = confidence(small_out, settings.confidence, small_probs)
    points = cascade_curve(conf, small_out.argmax(-1), large_out.argmax(-1), labels)
    return Observed(small_out, large_out, small_probs, is_probabilities(large_out), conf, labels, points)


def _choose_before_measuring(settings: CascadeSettings, seen: Observed) -> Any:
    """The choice that needs no latency (--threshold, --max-accuracy-drop); None for --max-mean-latency-ms."""
    from modelforge.cascade.curve import Choice, choose_by_accuracy, point_at

    if settings.rule() == "threshold":
        point = point_at(seen.conf, seen.small_pred, seen.large_pred, seen.labels, settings.threshold)
        return Choice(point, "threshold", True, f"threshold {settings.threshold} given")
    if settings.rule() == "max_accuracy_drop":
        return choose_by_accuracy(seen.points, seen.accuracy("large"), settings.max_accuracy_drop)
    return None


def _build(
    settings: CascadeSettings, small_path: Path, large_path: Path, workdir: Path, folder: Path, progress: Progress
) -> dict[str, Any]:
    from modelforge.cascade.graph import build_cascade, check_compatible, set_threshold
    from modelforge.model.onnx_model import load_onnx, save_onnx
    from modelforge.run.cascade_records import write_baseline, write_records
    from modelforge.runtimes.base import open_backend

    small_in = _load(settings, small_path, workdir, "small")
    large_in = _load(settings, large_path, workdir, "large")
    small_onnx, large_onnx = load_onnx(small_in.baseline.path), load_onnx(large_in.baseline.path)
    _, large_class = check_compatible(small_onnx, large_onnx)
    eval_data, labels = _bind_eval(large_in, settings, large_class.classes)
    if settings.rule() == "max_accuracy_drop" and labels is None:
        raise InputError(
            f"eval data {settings.eval_data} has no labels: --max-accuracy-drop needs them",
            hint="add a `labels` array, or choose by --max-mean-latency-ms or --threshold",
        )

    progress.log("running both models on the eval data")
    backends = {
        role: open_backend(loaded.baseline.path, runtime="onnxruntime", threads=settings.threads, stage="cascade")
        for role, loaded in (("small", small_in), ("large", large_in))
    }
    seen = _observe(settings, backends["small"], backends["large"], eval_data, labels)
    choice = _choose_before_measuring(settings, seen)
    graph = build_cascade(
        small_onnx,
        large_onnx,
        measure=settings.confidence,
        small_probabilities=seen.small_probabilities,
        large_probabilities=seen.large_probabilities,
        threshold=choice.point.threshold if choice else 0.5,  # the measurement feeds every threshold it times
    )
    save_onnx(graph, workdir / "cascade.onnx")
    backends["cascade"] = open_backend(
        workdir / "cascade.onnx", runtime="onnxruntime", threads=settings.threads, stage="cascade"
    )
    chosen = [choice.point.threshold] if choice else []
    shares = MEASURED_SHARES if choice else LATENCY_RULE_SHARES
    latency = _measure(settings, backends, eval_data, seen.points, chosen, shares, progress)
    if choice is None:  # --max-mean-latency-ms: the best of the thresholds just measured, side by side
        from modelforge.cascade.curve import choose_by_latency

        means = {c["threshold"]: c["mean_ms"] for c in latency["cascade"]}
        choice = choose_by_latency(seen.points, means, settings.max_mean_latency_ms)

    set_threshold(graph, choice.point.threshold, _metadata(settings, choice, seen.points))
    model_file = folder / "model.onnx"
    save_onnx(graph, model_file)
    check = _check_rows(model_file, eval_data, seen, choice.point.threshold, settings)
    if settings.target == "openvino":
        check["openvino"] = _openvino(model_file, eval_data, settings)
    write_baseline(folder, model_file, eval_data, check.pop("escalated"), choice.point.threshold, settings)
    return write_records(folder, settings, small_in, large_in, seen, choice, latency, check)


def _metadata(settings: CascadeSettings, choice: Any, points: list[Any]) -> dict[str, str]:
    from modelforge.cascade.curve import thin_points

    return {
        "threshold": repr(float(choice.point.threshold)),
        "confidence": settings.confidence,
        "rule": choice.rule,
        "escalated_share": f"{choice.point.escalated_share:.6f}",
        "curve": json.dumps([p.to_dict() for p in thin_points(points, CURVE_IN_METADATA)]),
    }


def _measure(
    settings: CascadeSettings,
    backends: dict[str, Any],
    eval_data: Any,
    points: list[Any],
    chosen: list[float],
    shares: tuple[float, ...],
    progress: Progress,
) -> dict[str, Any]:
    """Both models and the cascade at `chosen` and at the curve points nearest `shares`, on whole batches of
    the run's batch size."""
    from modelforge.cascade.measure import measure_thresholds, thresholds_to_measure

    thresholds = thresholds_to_measure(points, chosen[0] if chosen else None, shares)
    batch = min(settings.batch, eval_data.num_samples)
    usable = eval_data.window(0, eval_data.num_samples - eval_data.num_samples % batch)
    progress.log(f"measuring latency at batch {batch}: both models and the cascade at {len(thresholds)} thresholds")
    return measure_thresholds(
        backends["cascade"],
        backends["small"],
        backends["large"],
        list(usable.batches(batch)),
        thresholds,
        batch_size=batch,
        max_seconds=settings.latency_seconds,
        min_seconds=min(1.0, settings.latency_seconds),
        seed=settings.seed,
    )


def _check_rows(
    model_file: Path, eval_data: Any, seen: Observed, threshold: float, settings: CascadeSettings
) -> dict[str, Any]:
    """The written graph on onnxruntime, row by row against the two models run separately: which rows
    escalate (against the confidence computed here) and what each row holds."""
    from modelforge.cascade.confidence import softmax
    from modelforge.runtimes.base import open_backend

    backend = open_backend(model_file, runtime="onnxruntime", threads=settings.threads, stage="cascade")
    outs = [backend.run(feeds) for feeds in eval_data.batches(EVAL_BATCH)]
    answer = np.concatenate([o[0] for o in outs])
    escalated = np.concatenate([o[1] for o in outs]).astype(bool)
    mixed = seen.small_probabilities or seen.large_probabilities  # then both are served as probabilities
    small = softmax(seen.small_out) if mixed and not seen.small_probabilities else seen.small_out
    large = softmax(seen.large_out) if mixed and not seen.large_probabilities else seen.large_out
    expected = np.where(escalated[:, None], large, small)
    return {
        "rows": int(len(answer)),
        "escalated": escalated,
        "escalation_mismatches": int((escalated != (seen.conf < threshold)).sum()),
        "max_abs_diff": float(np.abs(answer - expected).max()) if len(answer) else 0.0,
        "outputs_are": "probabilities" if mixed else "the models' own scores",
    }


def _openvino(model_file: Path, eval_data, settings: CascadeSettings) -> dict[str, Any]:
    """The IR beside model.onnx, converted unchanged, run on the eval data against onnxruntime's answers."""
    from modelforge.runtimes.base import open_backend
    from modelforge.runtimes.openvino import write_ir

    write_ir(model_file, model_file.with_suffix(".xml"), compress_to_fp16=False, stage="cascade")
    ov_backend = open_backend(
        model_file.with_suffix(".xml"), runtime="openvino", threads=settings.threads, stage="cascade"
    )
    ort_backend = open_backend(model_file, runtime="onnxruntime", threads=settings.threads, stage="cascade")
    worst, mismatches, rows = 0.0, 0, 0
    for feeds in eval_data.batches(EVAL_BATCH):
        ov_out, ort_out = ov_backend.run(feeds), ort_backend.run(feeds)
        worst = max(worst, float(np.abs(ov_out[0] - ort_out[0]).max()))
        mismatches += int((ov_out[1].astype(bool) != ort_out[1].astype(bool)).sum())
        rows += len(ov_out[0])
    if mismatches > rows * 0.01:
        raise PassError("cascade", f"OpenVINO escalates {mismatches} of {rows} rows differently from onnxruntime")
    return {
        "rows": rows,
        "escalation_mismatches": mismatches,
        "max_abs_diff_vs_onnxruntime": worst,
        "threshold": "fixed at the chosen value (OpenVINO folds an input's default into a constant)",
    }
