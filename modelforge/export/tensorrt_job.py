"""`--target tensorrt`: build the engine here (explicit INT8 from Q/DQ, or TensorRT's own calibration of a float
model when asked), reuse and update a timing cache, and measure the engine against the ONNX model."""

from __future__ import annotations

from pathlib import Path

from modelforge.errors import InputError
from modelforge.export.config import ExportConfig
from modelforge.export.job import ExportJob, Record, profiles
from modelforge.model.artifact import IOSpec


def export_tensorrt(
    model_path: Path,
    io: IOSpec,
    config: ExportConfig,
    precision: str,
    quantized: bool,
    bundle: Path,
    job: ExportJob,
    record: Record,
) -> None:
    """Build `bundle`/model.plan; records the build under "tensorrt" and, with evaluation data, "engine_vs_onnx"."""
    from modelforge.export.tensorrt import BuildSettings, build_engine, compare_engine

    implicit = precision == "int8" and not quantized
    if implicit and not config.implicit_int8:
        raise InputError(
            "INT8 for a float model: quantize it first (--target tensorrt) or set implicit_int8 (--implicit-int8)"
        )
    batches = None
    if implicit:
        if job.calibration is None:
            raise InputError("implicit INT8 needs calibration data", hint="pass --calibration DATA")
        batches = list(job.calibration.batches(config.opt_batch))
    settings = BuildSettings(
        precision=precision,
        profiles=profiles(io, config),
        workspace_mib=config.workspace_mib,
        implicit_int8=implicit,
        sparse_weights=config.sparse_weights,
        dla_core=config.dla_core,
    )
    timing = bundle / "timing.cache"
    from modelforge.safe_files import copy_file

    if config.timing_cache is not None and config.timing_cache.is_file():
        copy_file(config.timing_cache, timing)
    with job.task("Building the TensorRT engine"):
        build = build_engine(
            model_path,
            bundle / "model.plan",
            settings,
            timing_cache=timing,
            calibration_batches=batches,
            calibration_cache=bundle / "calibration.cache" if implicit else None,
        )
    if config.timing_cache is not None:
        copy_file(timing, config.timing_cache)  # the next build reuses what this one timed (a link is refused)
    record["tensorrt"] = build
    if job.evaluation is not None:
        with job.task("Measuring the engine against the ONNX model"):
            record["engine_vs_onnx"] = compare_engine(
                model_path, bundle / "model.plan", job.evaluation, precision, job.threads
            )
