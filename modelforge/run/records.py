"""What a run records: the evaluation of baseline vs result, the models' records, the summary and gates, and
the files that say it (report.json/.md/.html, recipe.resolved.yaml, manifest.json) written into the staging folder.

report.json holds no NaN or infinity (JSON has none): an unmeasurable figure is null, and a gate on it fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.model.artifact import ModelArtifact
from modelforge.progress import Progress
from modelforge.recipe.schema import Recipe
from modelforge.run.gates import ResolvedGates, judge
from modelforge.run.inputs import Inputs, RunData


def evaluate(inputs: Inputs, final: ModelArtifact, recipe: Recipe, progress: Progress) -> dict[str, Any]:
    """Baseline vs result on the same data, each on its runtime; a run without data records the skip."""
    if inputs.eval_data is None:
        progress.log(inputs.eval_note)
        return _skipped_evaluation(inputs.eval_note)
    from modelforge.evaluate.evaluator import evaluate_pair

    return evaluate_pair(inputs.baseline, final, inputs.eval_data, inputs.eval_note, recipe.evaluate, progress)


def _skipped_evaluation(note: str) -> dict[str, Any]:
    """The evaluation record of a run without data: every figure unmeasured (None), so a gate on one fails."""
    metrics = {
        "samples": 0,
        "accuracy_baseline": None,
        "accuracy_result": None,
        "top1_agreement": None,
        "output_cosine": None,
    }
    return {"data": note, "skipped": True, "metrics": metrics, "latency": None}


def run_report(
    recipe: Recipe,
    inputs: Inputs,
    final: ModelArtifact,
    written: list[Path],
    evaluation: dict[str, Any],
    preflight: dict[str, Any],
    gates: ResolvedGates,
    out: Path,
) -> dict[str, Any]:
    """report.json's content (JSON-safe): summary, gates judged on it, models, stages, machine."""
    from modelforge.machine import machine_record
    from modelforge.report import build_report
    from modelforge.report.build import build_summary
    from modelforge.report.verdict import mark_original_shipped, run_warnings, same_file

    source, baseline, stages = inputs.source, inputs.baseline, inputs.stages
    result_size = served_size(final, written)
    summary = build_summary(
        evaluation, source.size_bytes() if source.format == "onnx" else baseline.size_bytes(), result_size
    )
    runtimes = evaluation.get("runtimes") or {}
    same_runtime = (runtimes.get("baseline") or {}).get("runtime") == (runtimes.get("result") or {}).get("runtime")
    if same_runtime and final.format == "onnx" and baseline.format == "onnx" and same_file(baseline.path, final.path):
        mark_original_shipped(summary, stages)
    report = build_report(
        recipe=recipe.model_dump(mode="json"),
        models={
            "source": str(recipe.model.path),
            "baseline": model_record(baseline, recipe.model.path, source.format),
            "result": model_record(final, out / written[0].name, size_bytes=result_size),
        },
        stages=stages,
        preflight=preflight,
        evaluation=evaluation,
        summary=summary,
        gates=judge(recipe, gates, summary, evaluation),
        machine=machine_record(framework_packages(source, final)),
        warnings=run_warnings(summary, stages, runtimes),
    )
    return json_safe(report)


def write_records(folder: Path, report: dict[str, Any], recipe: Recipe, data: RunData) -> None:
    """The report in its three renderings, the resolved recipe, and the manifest hashing every file (last)."""
    from modelforge.manifest import MANIFEST_NAME, build_manifest
    from modelforge.report.html import render_html
    from modelforge.report.markdown import render_markdown
    from modelforge.safe_files import write_text

    write_text(folder / "report.json", json.dumps(report, indent=2, allow_nan=False, default=json_default) + "\n")
    write_text(folder / "report.md", render_markdown(report))
    write_text(folder / "report.html", render_html(report))
    write_text(folder / "recipe.resolved.yaml", recipe.to_yaml())
    manifest = build_manifest(folder, recipe.model_dump(mode="json"), data.hashes(), report["machine"]["versions"])
    write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


def model_record(
    artifact: ModelArtifact, display_path: Path, source_format: str | None = None, size_bytes: int | None = None
) -> dict[str, Any]:
    """`source_format`: the format the user handed over, where the model was converted to run (a .pt2 baseline
    runs as ONNX); `size_bytes`: what the result is served from, where that is not the ONNX file (OpenVINO IR)."""
    from modelforge.model.onnx_model import load_onnx, opset_version

    model = load_onnx(artifact.path, load_external_data=False) if artifact.format == "onnx" else None
    return {
        "path": str(display_path),
        "format": artifact.format,
        **({"source_format": source_format} if source_format and source_format != artifact.format else {}),
        "compute": compute_share(artifact, model),
        "size_bytes": artifact.size_bytes() if size_bytes is None else size_bytes,
        "opset": opset_version(model) if model is not None else None,
        "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in artifact.io.inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in artifact.io.outputs],
    }


def compute_share(artifact: ModelArtifact, model) -> dict[str, Any] | None:
    """How much compute runs in INT8, counted on what is served: the IR a pass built itself (NNCF's, beside the
    float model.onnx it quantized), else the ONNX graph."""
    from modelforge.model.graph_stats import int8_compute_share

    if artifact.openvino_ir is not None and artifact.openvino_ir.is_file():
        from modelforge.runtimes.openvino_stats import ir_int8_compute_share

        return ir_int8_compute_share(artifact.openvino_ir)
    return int8_compute_share(model) if model is not None else None


def served_size(final: ModelArtifact, written: list[Path]) -> int:
    """The size of what the result is served from: model.xml + model.bin for an OpenVINO result (the IR the
    runtime loads, written beside model.onnx), the model's own files otherwise."""
    if final.served_on is not None and final.served_on.runtime == "openvino":
        ir = [p for p in written if p.suffix in (".xml", ".bin")]
        if ir:
            return sum(p.stat().st_size for p in ir)
    return final.size_bytes()


def framework_packages(source: ModelArtifact, final: ModelArtifact) -> tuple[str, ...]:
    """The framework versions a report records: those that loaded, converted or ran the models."""
    if source.format in ("keras", "savedmodel") or final.format == "tflite":
        return ("tensorflow", "keras", "tf_keras", "tf2onnx", "tensorflow_model_optimization", "ai_edge_litert")
    if source.format == "huggingface":
        return ("torch", "onnxscript", "transformers", "tokenizers", "safetensors", "optimum", "optimum-onnx")
    return ("torch", "onnxscript") if source.format != "onnx" else ()


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: a model whose outputs hold NaN still gets its report, with null there
    (and a gate on that value fails, as an unmeasured one does)."""
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
