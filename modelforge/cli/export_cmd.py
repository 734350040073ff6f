"""`modelforge export --target tflite`: a one-pass recipe (the `tflite` pass) built from flags.

Other deployment targets (TensorRT, OpenVINO, ...) join as further `--target` values, each one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.options import GateOptions, common_recipe
from modelforge.report.ci import with_error_outputs

TARGETS = ("tflite",)


@with_error_outputs
def export(
    model: Annotated[Path, typer.Argument(help="Keras model (.keras/.h5) or a SavedModel folder.")],
    target: Annotated[str, typer.Option("--target", help="Deployment target: tflite (LiteRT).")] = "tflite",
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", "-c", help="Calibration data (.npz/.npy): the representative dataset of INT8."),
    ] = None,
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", "-e", help="Evaluation data (labels enable accuracy).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")] = Path("modelforge-out"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    precision: Annotated[
        str, typer.Option(help="tflite: int8 (full integer), fp16, dynamic (int8 weights) or fp32.")
    ] = "int8",
    io_type: Annotated[
        str | None, typer.Option(help="tflite int8: input/output type float32, int8 or uint8 (default int8).")
    ] = None,
    calibration_samples: Annotated[int, typer.Option(help="tflite int8: representative samples used.")] = 200,
    compare_float: Annotated[
        bool, typer.Option(help="Also convert the float32 .tflite to report the size ratio against it.")
    ] = True,
    max_accuracy_drop: GateOptions.max_accuracy_drop = None,
    min_speedup: GateOptions.min_speedup = None,
    min_agreement: GateOptions.min_agreement = None,
    min_cosine: GateOptions.min_cosine = None,
    threads: GateOptions.threads = None,
    seed: GateOptions.seed = 0,
    cache: GateOptions.cache = True,
    save_recipe: GateOptions.save_recipe = None,
    dry_run: GateOptions.dry_run = False,
    quiet: GateOptions.quiet = False,
    as_json: GateOptions.as_json = False,
    summary_file: GateOptions.summary_file = None,
    junit: GateOptions.junit = None,
) -> int:
    """Export a model for a deployment target: --target tflite writes model.tflite (full-integer INT8 by
    default, calibrated on --calibration) and compares it, run on LiteRT, with the original."""
    from functools import partial

    from modelforge.cli.execute import execute
    from modelforge.cli.options import finish
    from modelforge.errors import InputError

    if target not in TARGETS:
        raise InputError(f"--target {target!r}: expected one of {', '.join(TARGETS)}")
    if precision == "int8" and calibration is None:
        raise InputError("--precision int8 needs --calibration DATA (the representative dataset)")
    config = {"precision": precision, "calibration_samples": calibration_samples, "compare_float": compare_float}
    if io_type is not None:
        config["io_type"] = io_type
    recipe = common_recipe(
        model=model,
        passes=[{"name": target, "config": config}],
        data={
            "calibration": str(calibration) if calibration else None,
            "eval_data": str(eval_data) if eval_data else None,
        },
        output=output,
        force=force,
        threads=threads,
        seed=seed,
        cache=cache,
        gates={
            "max_accuracy_drop": max_accuracy_drop,
            "min_speedup": min_speedup,
            "min_agreement": min_agreement,
            "min_cosine": min_cosine,
        },
    )
    ci_execute = partial(execute, summary_file=summary_file, junit=junit)
    return finish(recipe, save_recipe, dry_run, quiet, as_json, ci_execute)
