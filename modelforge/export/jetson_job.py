"""`--target jetson`: check the graph against the device's TensorRT, take the INT8 scales (from the Q/DQ nodes,
or calibrated here for a float model) and write the bundle that builds the engine on the device."""

from __future__ import annotations

from pathlib import Path

from modelforge.errors import InputError
from modelforge.export.config import ExportConfig
from modelforge.export.job import ExportJob, Record, profiles
from modelforge.model.artifact import IOSpec


def export_jetson(
    model,
    model_path: Path,
    io: IOSpec,
    config: ExportConfig,
    precision: str,
    quantized: bool,
    bundle: Path,
    job: ExportJob,
    record: Record,
) -> None:
    """Write the Jetson bundle into `bundle`; records what it chose under "jetson"."""
    from modelforge.export.calibration_cache import calibrated_scales, qdq_scales
    from modelforge.export.jetson import EngineFlags, write_jetson_bundle
    from modelforge.export.trt_ops import check_tensorrt_ops, tensorrt_version_for

    trt_version = tensorrt_version_for(config.jetpack)
    check_tensorrt_ops(model, trt_version)  # every unsupported node at once, before anything is written
    shapes = profiles(io, config)  # a missing --dim is said before calibrating
    scales = None
    if precision == "int8" and quantized:
        scales = qdq_scales(model)
    elif precision == "int8":
        if job.calibration is None:
            raise InputError("INT8 for a float model needs calibration data", hint="pass --calibration DATA")
        with job.task("Calibrating for TensorRT's INT8 cache", job.calibration.num_samples) as advance:
            scales = calibrated_scales(model_path, job.calibration, job.threads, advance=advance)
    flags = EngineFlags(
        precision=precision,
        profiles=shapes,
        workspace_mib=config.workspace_mib,
        calibration_cache=precision == "int8" and not quantized,
        dla_core=config.dla_core,
        sparse_weights=config.sparse_weights,
    )
    inputs = ", ".join(f"{t.name} {t.dtype} {t.shape_text()}" for t in io.inputs)
    files = write_jetson_bundle(
        bundle,
        name=config.name,
        jetpack=config.jetpack,
        tensorrt_version=trt_version,
        flags=flags,
        scales=scales,
        explicit_int8=quantized,
        inputs_text=inputs,
    )
    record["jetson"] = {
        "jetpack": config.jetpack,
        "tensorrt_version": trt_version,
        "precision": precision,
        "int8": "explicit (Q/DQ)" if quantized else ("implicit (calibration cache)" if precision == "int8" else None),
        "calibration_cache_tensors": len(scales or {}),
        "trtexec": flags.trtexec_args(),
        "files": files,
    }
