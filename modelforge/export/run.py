"""The export engine: what every target shares (the model written as ONNX, the precision chosen and said, 2:4
sparsity carried over, the drift baseline), then the target's own job (triton_job, jetson_job, tensorrt_job),
each writing into a bundle folder the pipeline copies beside model.onnx in the output (runtimes/writers.py).

It takes the model, the config and an ExportJob (work folder, data, progress) and returns the model handed on
with the figures for the stage record; it knows nothing of passes or the run.
"""

from __future__ import annotations

import dataclasses
import json

from modelforge.errors import InputError
from modelforge.export.config import ExportConfig
from modelforge.export.job import ExportJob, ExportResult, Record, drift_baseline, write_baseline
from modelforge.model.artifact import ModelArtifact
from modelforge.runtimes.writers import write_artifact


def export_target(artifact: ModelArtifact, config: ExportConfig, job: ExportJob) -> ExportResult:
    """Export `artifact` (ONNX) to `config.target`; the model is handed on unchanged, the target's files beside
    it as a side output, a Triton repository outside the output as a publication."""
    from modelforge.model.onnx_model import is_quantized, load_onnx

    if config.target == "tensorrt":  # what is missing is said before any work
        from modelforge.runtimes.tensorrt import require_tensorrt

        require_tensorrt("export --target tensorrt")
    record: Record = {}
    model_dir, bundle = job.workdir / "model", job.workdir / "bundle"
    model_dir.mkdir()
    bundle.mkdir()
    model_path = write_artifact(artifact, model_dir)[0]
    model = load_onnx(model_path, load_external_data=False)
    quantized = is_quantized(model)
    precision, why = choose_precision(config, quantized, job.calibration is not None)
    if config.target == "jetson":  # the engine's precision decides speed and accuracy on the device: said
        job.progress.log(f"jetson: building {precision.upper()}: {why}")
        record["precision_choice"] = f"{precision}: {why}"
    if quantized and precision != "int8" and config.target != "triton":
        raise InputError(
            f"precision {precision}: the model has Q/DQ (INT8) nodes, which TensorRT builds only with int8",
            hint="use --precision int8 (or auto), or export the float model",
        )
    record["target"] = config.target
    if not config.sparse_weights and _pruned_2_4(model):  # the prune pass enforced 2:4: use sparse tensor cores
        config = config.model_copy(update={"sparse_weights": True})
        record["sparse_weights"] = "on: the model carries the prune pass's 2:4 sparsity record"
    if config.target == "jetson":
        from modelforge.export.jetson_job import export_jetson

        export_jetson(model, model_path, artifact.io, config, precision, quantized, bundle, job, record)
    elif config.target == "triton":
        from modelforge.export.triton_job import Served

        # A model labelled for OpenVINO (--target openvino/auto) has its IR beside model.onnx: Triton's OpenVINO
        # backend serves that IR, the files that were measured.
        ir = [model_dir / "model.xml", model_dir / "model.bin"]
        served_on = artifact.served_on
        if served_on is not None and served_on.runtime == "openvino" and ir[0].is_file():
            served = Served(ir, "openvino", served_on.precision)
        else:
            served = Served([model_path], "onnxruntime", "fp32")
    else:
        from modelforge.export.tensorrt_job import export_tensorrt

        export_tensorrt(model_path, artifact.io, config, precision, quantized, bundle, job, record)
    del model
    publications: tuple = ()
    if config.target == "triton":
        from modelforge.export.triton_job import export_triton

        publications = export_triton(model_path, artifact.io, config, precision, bundle, job, served, record)
    elif config.baseline_stats:
        baseline = drift_baseline(model_path, artifact.io, job, record)
        if baseline is not None:
            record["baseline_stats"] = write_baseline(baseline, bundle)
    handed_on = dataclasses.replace(
        artifact, path=model_path, format="onnx", side_outputs=(bundle,), publications=publications
    )
    return ExportResult(handed_on, record)


def choose_precision(config: ExportConfig, quantized: bool, calibrated: bool) -> tuple[str, str]:
    """The engine precision and why. auto: int8 for a Q/DQ model; for a Jetson bundle of a float model, int8
    when calibration data is given (it would be ignored otherwise), fp16 without."""
    if config.precision != "auto":
        return config.precision, "--precision " + config.precision
    if quantized:
        return "int8", "the model has Q/DQ (INT8) nodes"
    if config.target == "jetson" and calibrated:
        return "int8", "calibration data given, calibrated here into calibration.cache (--precision fp16 for FP16)"
    if config.target == "jetson":
        return "fp16", "a float model and no calibration data (--calibration DATA for INT8)"
    return "fp16", "a float model"


def _pruned_2_4(model) -> bool:
    record = next((p.value for p in model.metadata_props if p.key == "modelforge.sparsity"), None)
    try:
        return record is not None and json.loads(record).get("pattern") == "2:4"
    except (ValueError, AttributeError):
        return False
