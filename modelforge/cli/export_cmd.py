"""`modelforge export MODEL --target triton|jetson|tensorrt|tflite`: a one-pass recipe from flags.

triton, jetson and tensorrt are the `export` pass (ONNX in); tflite is the `tflite` pass (a Keras model in, a
LiteRT flatbuffer out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import Help, Omit, Pick, flag_groups
from modelforge.cli.groups import (
    DataFlags,
    GateFlags,
    GrantFlags,
    HFModelFlags,
    OutputFlags,
    RecipeFileFlags,
    ReportFlags,
    RuntimeFlags,
)
from modelforge.export.targets import one_of, target_names
from modelforge.report.ci import with_error_outputs


def _dims(values: list[str] | None) -> dict[str, int]:
    from modelforge.errors import InputError

    dims = {}
    for value in values or []:
        name, _, size = value.partition("=")
        if not name or not size.isdigit() or int(size) <= 0:
            raise InputError(f"--dim {value!r}: expected NAME=SIZE with a positive size")
        dims[name] = int(size)
    return dims


def _sizes(text: str) -> list[int]:
    from modelforge.errors import InputError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--batch-sizes {text!r}: expected comma-separated integers, e.g. 1,2,4,8") from None


@with_error_outputs
@flag_groups
def export(
    model: Annotated[
        Path,
        typer.Argument(
            help="The model to export (.onnx, e.g. the output of quantize, or a Hugging Face folder; tflite: a Keras "
            "model)."
        ),
    ],
    *,
    target: Annotated[str, typer.Option(help=f"{one_of(target_names())}.")],
    name: Annotated[str, typer.Option(help="Model name (Triton model folder).")] = "model",
    data: Annotated[
        DataFlags,
        Pick("calibration", "eval_data", *DataFlags.TEXT),
        Help(calibration="Samples for INT8 caches, warm-up, sweep, baseline.", eval_data="Evaluation data."),
    ],
    output: Annotated[
        OutputFlags, Pick("output"), Help(output="The run's own folder: report, manifest (never a repository).")
    ],
    repository: Annotated[
        Path | None,
        typer.Option(help="triton: model repository to add the model to (default: OUT/model_repository, new)."),
    ] = None,
    replace_config: Annotated[
        bool, typer.Option("--replace-config", help="triton: accept a version whose inputs/outputs differ.")
    ] = False,
    _force: Annotated[OutputFlags, Pick("force")],  # the same group object as `output`
    precision: Annotated[
        str,
        typer.Option(help="auto, fp32, fp16 or int8 (TensorRT); tflite: int8 (full integer, the auto), fp16, dynamic."),
    ] = "auto",
    jetpack: Annotated[str, typer.Option(help="jetson: JetPack release (5.1, 6.0, 6.1, 6.2, 7.0).")] = "6.1",
    dim: Annotated[list[str] | None, typer.Option("--dim", help="NAME=SIZE for a dynamic axis (repeatable).")] = None,
    min_batch: Annotated[int, typer.Option(help="TensorRT profile: smallest batch.")] = 1,
    opt_batch: Annotated[int, typer.Option(help="TensorRT profile: batch to tune for.")] = 8,
    max_batch: Annotated[int, typer.Option(help="TensorRT profile: largest batch.")] = 32,
    workspace_mib: Annotated[int, typer.Option(help="TensorRT workspace limit (MiB).")] = 1024,
    dla_core: Annotated[int | None, typer.Option(help="jetson: build for this DLA core (GPU fallback).")] = None,
    sparse_weights: Annotated[bool, typer.Option("--sparse-weights", help="TensorRT sparse weights (2:4).")] = False,
    implicit_int8: Annotated[
        bool, typer.Option("--implicit-int8", help="tensorrt: INT8 by TensorRT's calibrator (float model).")
    ] = False,
    timing_cache: Annotated[Path | None, typer.Option(help="tensorrt: timing cache read and updated.")] = None,
    batch_sizes: Annotated[str, typer.Option(help="triton: batch sizes swept, e.g. 1,2,4,8,16,32.")] = "1,2,4,8,16,32",
    memory_budget: Annotated[
        float | None, typer.Option(help="triton: largest max_batch_size whose measured peak memory fits (MiB).")
    ] = None,
    instance_kind: Annotated[str, typer.Option(help="triton: cpu or gpu instances.")] = "cpu",
    instances: Annotated[int, typer.Option(help="triton: instance count.")] = 1,
    warmup: Annotated[
        bool, typer.Option("--warmup/--no-warmup", help="triton: warm-up (a data sample, else Triton-made).")
    ] = True,
    labels: Annotated[Path | None, typer.Option(help="triton: class names file, one a line.")] = None,
    tensorrt_accelerator: Annotated[
        bool, typer.Option("--tensorrt-accelerator", help="triton: ONNX Runtime's TensorRT accelerator (GPU).")
    ] = False,
    baseline_stats: Annotated[
        bool, typer.Option("--baseline-stats/--no-baseline-stats", help="Write baseline_stats.json for drift.")
    ] = True,
    io_type: Annotated[
        str | None, typer.Option(help="tflite int8: input/output type float32, int8 or uint8 (default int8).")
    ] = None,
    calibration_samples: Annotated[int, typer.Option(help="tflite int8: representative samples used.")] = 200,
    compare_float: Annotated[
        bool, typer.Option(help="tflite: also convert the float32 .tflite to report the size ratio against it.")
    ] = True,
    skip_latency: Annotated[
        bool, typer.Option("--skip-latency", help="No latency measurement (and no Triton batch sweep).")
    ] = False,
    gates: Annotated[GateFlags, Omit("min_speedup")],
    runtime: Annotated[RuntimeFlags, Omit("cache")],
    recipe_file: RecipeFileFlags,
    hf_model: HFModelFlags,
    grants: Annotated[GrantFlags, Pick("trust_model_code", "trust_remote_code")],
    report: ReportFlags,
) -> int:
    """Export a model for serving: a Triton model repository (config from a measured batch sweep), a Jetson
    bundle (TensorRT-ready ONNX, calibration cache, build_engine.sh, verify.sh), a TensorRT engine, or a Keras
    model as a .tflite run on LiteRT (full-integer INT8 by default, calibrated on --calibration). Triton,
    Jetson and TensorRT exports ship baseline_stats.json for `modelforge drift` (Triton: in the model's
    folder). `--repository REPO` adds the model to a repository that outlives the run (the next version of
    --name; the run's reports stay in -o). Without data, the export still runs: generated inputs for the
    sweep, Triton-made warm-up, no baseline and no evaluation."""
    from modelforge.cli.execute import finish, recipe_from_flags
    from modelforge.errors import InputError

    if target not in target_names():
        raise InputError(f"--target {target!r}: expected one of {one_of(target_names())}")
    config = {
        "target": target,
        "name": name,
        "precision": precision,
        "jetpack": jetpack,
        "dims": _dims(dim),
        "min_batch": min_batch,
        "opt_batch": opt_batch,
        "max_batch": max_batch,
        "workspace_mib": workspace_mib,
        "dla_core": dla_core,
        "sparse_weights": sparse_weights,
        "implicit_int8": implicit_int8,
        "timing_cache": str(timing_cache.resolve()) if timing_cache else None,
        "batch_sizes": _sizes(batch_sizes),
        "memory_budget": memory_budget,
        "instance_kind": instance_kind,
        "instances": instances,
        "warmup": warmup,
        "labels": str(labels.resolve()) if labels else None,
        "tensorrt_accelerator": tensorrt_accelerator,
        "baseline_stats": baseline_stats,
        "repository": str(repository.absolute()) if repository else None,
        "replace_config": replace_config,
    }
    if target == "tflite":
        step = _tflite_pass(precision, data.calibration, io_type, calibration_samples, compare_float)
    else:
        step = {"name": "export", "config": config}
    raw: dict = {"model": {"path": str(model)}, "passes": [step]}
    data.fill(raw)
    recipe = recipe_from_flags(raw, output, gates, runtime, grants, hf_model)
    if skip_latency:
        recipe.evaluate.skip_latency = True
    return finish(recipe, recipe_file, report)


def _tflite_pass(precision: str, calibration: Path | None, io_type: str | None, samples: int, compare: bool) -> dict:
    from modelforge.errors import InputError

    precision = "int8" if precision == "auto" else precision
    if precision == "int8" and calibration is None:
        raise InputError("--precision int8 needs --calibration DATA (the representative dataset)")
    config = {"precision": precision, "calibration_samples": samples, "compare_float": compare}
    if io_type is not None:
        config["io_type"] = io_type
    return {"name": "tflite", "config": config}
