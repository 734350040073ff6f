"""`modelforge cascade`: the glue between the loaded models (run/inputs: the one way a user's model becomes ONNX),
the cascade engine (cascade/), monitoring's baseline and the output folder (run/output: staged, atomic).

Order: check the output and the settings; load and convert both models; check they are compatible; run both
on the eval data; the curve; build the graph; measure it at several thresholds interleaved with both models;
choose; check the written graph row by row (and on OpenVINO); baseline_stats.json; report; move into place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError, PassError
from modelforge.progress import Progress

# Escalation shares whose nearest curve points are measured (besides the chosen threshold).
MEASURED_SHARES = (0.0, 0.1, 0.25, 0.5, 1.0)
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
        source = load_model(path)
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


def _outputs(backend: Any, data: Any) -> np.ndarray:
    return np.concatenate([backend.run(feeds)[0] for feeds in data.batches(EVAL_BATCH)])


def _build(
    settings: CascadeSettings, small_path: Path, large_path: Path, workdir: Path, folder: Path, progress: Progress
) -> dict[str, Any]:
    from modelforge.cascade.confidence import confidence, is_probabilities
    from modelforge.cascade.curve import cascade_curve, choose_by_accuracy, point_at
    from modelforge.cascade.graph import build_cascade, check_compatible
    from modelforge.model.onnx_model import load_onnx, save_onnx
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
    small_backend = open_backend(small_in.baseline.path, runtime="onnxruntime", threads=settings.threads)
    large_backend = open_backend(large_in.baseline.path, runtime="onnxruntime", threads=settings.threads)
    small_out, large_out = _outputs(small_backend, eval_data), _outputs(large_backend, eval_data)
    small_probs, large_probs = is_probabilities(small_out), is_probabilities(large_out)
    conf = confidence(small_out, settings.confidence, small_probs)
    small_pred, large_pred = small_out.argmax(-1), large_out.argmax(-1)
    points = cascade_curve(conf, small_pred, large_pred, labels)
    large_acc = float((large_pred == labels).mean()) if labels is not None else None
    small_acc = float((small_pred == labels).mean()) if labels is not None else None

    choice = None
    if settings.rule() == "threshold":
        from modelforge.cascade.curve import Choice

        point = point_at(conf, small_pred, large_pred, labels, settings.threshold)
        choice = Choice(point, "threshold", True, f"threshold {settings.threshold} given")
    elif settings.rule() == "max_accuracy_drop":
        choice = choose_by_accuracy(points, large_acc, settings.max_accuracy_drop)

    graph = build_cascade(
        small_onnx,
        large_onnx,
        measure=settings.confidence,
        small_probabilities=small_probs,
        large_probabilities=large_probs,
        threshold=choice.point.threshold if choice else 0.5,
    )
    measured_path = workdir / "cascade.onnx"
    save_onnx(graph, measured_path)
    cascade_backend = open_backend(measured_path, runtime="onnxruntime", threads=settings.threads)

    latency = _measure(settings, cascade_backend, small_backend, large_backend, eval_data, points, choice, progress)
    if choice is None:  # --max-mean-latency-ms: chosen from the measured points, then measured itself
        from modelforge.cascade.curve import choose_by_latency
        from modelforge.cascade.measure import latency_by_share

        shares = {c["threshold"]: c["mean_ms"] for c in latency["cascade"]}
        measured = [(p.escalated_share, shares[p.threshold]) for p in points if p.threshold in shares]
        choice = choose_by_latency(points, latency_by_share(measured), settings.max_mean_latency_ms)
        if choice.point.threshold not in shares:
            extra = _measure(
                settings,
                cascade_backend,
                small_backend,
                large_backend,
                eval_data,
                points,
                choice,
                progress,
                only_chosen=True,
            )
            latency["cascade"] += extra["cascade"]
    chosen = choice.point
    chosen_latency = next(c for c in latency["cascade"] if c["threshold"] == chosen.threshold)

    # The shipped graph: the chosen threshold as the input's default, the curve as metadata.
    from modelforge.cascade.curve import thin_points
    from modelforge.cascade.graph import METADATA_PREFIX, THRESHOLD_INPUT

    for init in graph.graph.initializer:
        if init.name == THRESHOLD_INPUT:
            init.float_data[:] = [float(chosen.threshold)]
    metadata = {
        "threshold": repr(float(chosen.threshold)),
        "confidence": settings.confidence,
        "rule": choice.rule,
        "escalated_share": f"{chosen.escalated_share:.6f}",
        "curve": json.dumps([p.to_dict() for p in thin_points(points, CURVE_IN_METADATA)]),
    }
    for key, value in metadata.items():
        graph.metadata_props.add(key=METADATA_PREFIX + key, value=value)
    model_file = folder / "model.onnx"
    save_onnx(graph, model_file)

    check = _check_rows(
        model_file, eval_data, conf, small_out, large_out, chosen.threshold, settings, small_probs, large_probs
    )
    written = [model_file, *[p for p in folder.iterdir() if p.name.startswith("model.onnx.")]]
    if settings.target == "openvino":
        check["openvino"] = _openvino(model_file, eval_data, settings)
        written += [folder / "model.xml", folder / "model.bin"]
    _write_baseline(folder, model_file, eval_data, check["escalated"], chosen.threshold, settings)

    report = _report(
        settings,
        small_in,
        large_in,
        points,
        choice,
        latency,
        chosen_latency,
        check,
        small_acc,
        large_acc,
        model_file,
        written,
    )
    _write_records(folder, report, settings, large_in)
    return report


def _measure(settings, cascade, small, large, eval_data, points, choice, progress, only_chosen=False):
    from modelforge.cascade.measure import measure_thresholds, thresholds_to_measure

    chosen = choice.point.threshold if choice is not None else None
    thresholds = [chosen] if only_chosen else thresholds_to_measure(points, chosen, MEASURED_SHARES)
    batch = min(settings.batch, eval_data.num_samples)
    usable = eval_data.window(0, eval_data.num_samples - eval_data.num_samples % batch)
    batches = list(usable.batches(batch))
    progress.log(f"measuring latency at batch {batch}: both models and the cascade at {len(thresholds)} thresholds")
    return measure_thresholds(
        cascade,
        small,
        large,
        batches,
        thresholds,
        batch_size=batch,
        max_seconds=settings.latency_seconds,
        min_seconds=min(1.0, settings.latency_seconds),
    )


def _check_rows(model_file, eval_data, conf, small_out, large_out, threshold, settings, small_probs, large_probs):
    """The written graph on onnxruntime, row by row against the two models run separately."""
    from modelforge.cascade.confidence import softmax
    from modelforge.runtimes.base import open_backend

    backend = open_backend(model_file, runtime="onnxruntime", threads=settings.threads, stage="cascade")
    outs = [backend.run(feeds) for feeds in eval_data.batches(EVAL_BATCH)]
    answer = np.concatenate([o[0] for o in outs])
    escalated = np.concatenate([o[1] for o in outs]).astype(bool)
    mixed = small_probs or large_probs
    s = softmax(small_out) if mixed and not small_probs else small_out
    lg = softmax(large_out) if mixed and not large_probs else large_out
    expected_rows = conf < threshold
    expected = np.where(escalated[:, None], lg, s)
    return {
        "rows": int(len(answer)),
        "escalated": escalated,
        "escalation_mismatches": int((escalated != expected_rows).sum()),
        "max_abs_diff": float(np.abs(answer - expected).max()) if len(answer) else 0.0,
        "outputs_are": "probabilities" if mixed else "the models' own scores",
        "answer": answer,
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


def _write_baseline(
    folder: Path, model_file: Path, eval_data, escalated: np.ndarray, threshold: float, settings: CascadeSettings
) -> None:
    from modelforge.monitoring.baseline import BASELINE_NAME, build_baseline, escalation_record
    from modelforge.safe_files import write_text

    baseline = build_baseline(model_file, None, eval_data, seed=settings.seed, threads=settings.threads)
    baseline["escalation"] = escalation_record(escalated, threshold)
    write_text(folder / BASELINE_NAME, json.dumps(baseline, indent=2) + "\n")


def _report(
    settings,
    small_in,
    large_in,
    points,
    choice,
    latency,
    chosen_latency,
    check,
    small_acc,
    large_acc,
    model_file,
    written,
) -> dict[str, Any]:
    from modelforge.machine import machine_record
    from modelforge.report.build import build_report
    from modelforge.run.records import json_safe, model_record

    chosen = choice.point
    large_lat = latency["large"]
    cascade_size = sum(p.stat().st_size for p in written if p.suffix in (".onnx", ".data") or ".onnx." in p.name)
    large_size = large_in.baseline.size_bytes()
    acc = chosen.accuracy
    summary = {
        "accuracy_baseline": large_acc,
        "accuracy_result": acc,
        "accuracy_drop_pp": round((large_acc - acc) * 100, 9) if acc is not None and large_acc is not None else None,
        "top1_agreement": chosen.agreement_large,
        "output_cosine": None,
        "latency_p50_ms_baseline": large_lat["p50_ms"],
        "latency_p50_ms_result": chosen_latency["p50_ms"],
        "speedup": large_lat["mean_ms"] / chosen_latency["mean_ms"] if chosen_latency["mean_ms"] else None,
        "size_bytes_baseline": large_size,
        "size_bytes_result": cascade_size,
        "size_ratio": large_size / cascade_size if cascade_size else None,
        "latency_mean_ms_baseline": large_lat["mean_ms"],
        "latency_mean_ms_result": chosen_latency["mean_ms"],
        "latency_p99_ms_baseline": large_lat["p99_ms"],
        "latency_p99_ms_result": chosen_latency["p99_ms"],
        "accuracy_small": small_acc,
        "threshold": chosen.threshold,
        "escalated_share": chosen.escalated_share,
    }
    gates = []
    if choice.rule == "max_accuracy_drop":
        gates.append(
            _gate(
                "max_accuracy_drop",
                "accuracy_drop_pp",
                settings.max_accuracy_drop,
                summary["accuracy_drop_pp"],
                choice.target_met,
            )
        )
    elif choice.rule == "max_mean_latency_ms":
        met = chosen_latency["mean_ms"] <= settings.max_mean_latency_ms
        if not met and choice.target_met:  # chosen by interpolation, then measured over the limit
            choice = replace(
                choice,
                target_met=False,
                detail=choice.detail
                + (f"; measured {chosen_latency['mean_ms']:.4g} ms at the chosen threshold, over the limit"),
            )
        gates.append(
            _gate(
                "max_mean_latency_ms",
                "latency_mean_ms_result",
                settings.max_mean_latency_ms,
                chosen_latency["mean_ms"],
                met,
            )
        )
    rows = {k: v for k, v in check.items() if k not in ("escalated", "answer")}
    cascade = {
        "version": 1,
        "confidence": settings.confidence,
        "rule": choice.rule,
        "rule_detail": choice.detail,
        "target_met": choice.target_met,
        "chosen": {**chosen.to_dict(), "mean_ms": chosen_latency["mean_ms"], "p99_ms": chosen_latency["p99_ms"]},
        "small": {"path": str(settings.small), "accuracy": small_acc, **latency["small"]},
        "large": {"path": str(settings.large), "accuracy": large_acc, **large_lat},
        "curve": [p.to_dict() for p in points],
        "latency": latency,
        "check": rows,
        "threshold_input": "cascade_threshold",
        "outputs": [large_in.baseline.io.outputs[0].name, "escalated"],
    }
    evaluation = {
        "data": f"eval data {settings.eval_data}",
        "metrics": {
            "samples": check["rows"],
            "accuracy_baseline": large_acc,
            "accuracy_result": acc,
            "top1_agreement": chosen.agreement_large,
            "output_cosine": None,
        },
        "latency": None,
    }
    from modelforge.model.onnx_model import onnx_artifact

    frameworks = ("torch", "onnxscript") if "onnx" not in (small_in.source.format, large_in.source.format) else ()
    report = build_report(
        recipe={"command": "cascade", **settings.to_json()},
        models={
            "source": str(settings.large),
            "baseline": model_record(large_in.baseline, settings.large, large_in.source.format),
            "small": model_record(small_in.baseline, settings.small, small_in.source.format),
            "result": model_record(
                onnx_artifact(model_file), settings.output / model_file.name, size_bytes=cascade_size
            ),
        },
        stages=[*small_in.stages, *large_in.stages],
        preflight={},
        evaluation=evaluation,
        summary=summary,
        gates=gates,
        machine=machine_record(frameworks + (("openvino",) if settings.target == "openvino" else ())),
    )
    report["cascade"] = cascade
    return json_safe(report)


def _gate(name: str, metric: str, threshold: float, value: float | None, passed: bool) -> dict[str, Any]:
    return {
        "name": name,
        "metric": metric,
        "threshold": threshold,
        "value": value,
        "passed": bool(passed),
        "default": False,
    }


def _write_records(folder: Path, report: dict[str, Any], settings: CascadeSettings, large_in) -> None:
    """report.json/md/html, the resolved settings (the cascade is a command, not a pass chain: no recipe form),
    and the manifest hashing every file (last)."""
    from modelforge.manifest import MANIFEST_NAME, build_manifest
    from modelforge.report.cascade import render_cascade_html, render_cascade_markdown
    from modelforge.run.records import json_default
    from modelforge.safe_files import write_text

    write_text(folder / "report.json", json.dumps(report, indent=2, allow_nan=False, default=json_default) + "\n")
    write_text(folder / "report.md", render_cascade_markdown(report))
    write_text(folder / "report.html", render_cascade_html(report))
    write_text(folder / "cascade.resolved.json", json.dumps(settings.to_json(), indent=2) + "\n")
    manifest = build_manifest(
        folder,
        {"command": "cascade", **settings.to_json()},
        {"eval_data": large_in.data.sha256(settings.eval_data)},
        report["machine"]["versions"],
    )
    write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
