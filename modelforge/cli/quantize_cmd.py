"""`modelforge quantize`: a one-pass recipe (the `quantize` pass) built from flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.options import GateOptions, TrustOptions, common_recipe
from modelforge.report.ci import with_error_outputs


def _floats(text: str | None, flag: str) -> list[float] | None:
    from modelforge.errors import InputError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 0.485,0.456,0.406") from None


@with_error_outputs
def quantize(
    model: Annotated[
        Path,
        typer.Argument(help="Model file: .onnx, .pt2 (torch.export), TorchScript, Keras (.keras/.h5) or a SavedModel."),
    ],
    calibration: Annotated[
        Path, typer.Option("--calibration", "-c", help="Calibration data: .npz, .npy or an image folder.")
    ],
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", "-e", help="Evaluation data (labels enable accuracy).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")] = Path("modelforge-out"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    method: Annotated[str, typer.Option(help="Calibration method: minmax, entropy or percentile.")] = "minmax",
    calibration_samples: Annotated[int | None, typer.Option(help="Calibrate on at most N samples.")] = None,
    per_channel: Annotated[bool, typer.Option(help="Per-output-channel weight scales.")] = True,
    preset: Annotated[str, typer.Option(help="Scheme: auto (detect the model family), cnn or transformer.")] = "auto",
    target: Annotated[
        str,
        typer.Option(
            help="Runtime: cpu (onnxruntime), tensorrt (int8 symmetric QDQ), openvino (IR model.xml/.bin, needs "
            "the openvino extra) or auto (measure every installed runtime x precision here, keep the fastest "
            "that meets the gates)."
        ),
    ] = "cpu",
    precision: Annotated[
        str,
        typer.Option(
            help="int8, or int4-weights (4-bit MatMul weights); --target openvino also bf16 (CPUs with AMX or "
            "AVX-512 BF16) or fp32."
        ),
    ] = "int8",
    percentile: Annotated[float, typer.Option(help="Percentile method: clip |x| at this percentile.")] = 99.99,
    speed_aware: Annotated[
        bool,
        typer.Option(
            help="Keep in float the op groups INT8 makes slower on this machine; ship the float graph when no INT8 "
            "configuration is faster (--no-speed-aware: quantize everything, smallest file)."
        ),
    ] = True,
    fallback: Annotated[
        bool, typer.Option(help="Keep the most sensitive nodes in float until the accuracy gates are met.")
    ] = True,
    time_budget: Annotated[
        float | None,
        typer.Option(help="Seconds the fallback search may take; then (or on Ctrl-C) the best result so far is kept."),
    ] = None,
    mean: Annotated[str | None, typer.Option(help="Image folders: per-channel mean, e.g. 0.485,0.456,0.406.")] = None,
    color: Annotated[
        str | None, typer.Option(help="Image folders: channel order RGB, BGR, or L (one grayscale channel).")
    ] = None,
    std: Annotated[str | None, typer.Option(help="Image folders: per-channel std, e.g. 0.229,0.224,0.225.")] = None,
    max_accuracy_drop: GateOptions.max_accuracy_drop = None,
    min_speedup: GateOptions.min_speedup = None,
    min_agreement: GateOptions.min_agreement = None,
    min_cosine: GateOptions.min_cosine = None,
    default_gates: GateOptions.default_gates = True,
    threads: GateOptions.threads = None,
    seed: GateOptions.seed = 0,
    cache: GateOptions.cache = True,
    save_recipe: GateOptions.save_recipe = None,
    dry_run: GateOptions.dry_run = False,
    trust_model_code: TrustOptions.trust_model_code = False,
    quiet: GateOptions.quiet = False,
    as_json: GateOptions.as_json = False,
    summary_file: GateOptions.summary_file = None,
    junit: GateOptions.junit = None,
) -> int:
    """INT8 post-training quantization with calibration data; reports accuracy, speed and size vs the original.

    Scheme by model family (--preset). Accuracy gates keep the most sensitive nodes in float until met.
    """
    from functools import partial

    from modelforge.cli.execute import execute
    from modelforge.cli.options import finish

    preprocessing = {
        k: v
        for k, v in (("mean", _floats(mean, "--mean")), ("std", _floats(std, "--std")), ("color", color))
        if v is not None
    }
    if preprocessing and not any(p is not None and p.is_dir() for p in (calibration, eval_data)):
        from modelforge.errors import InputError

        flags = ", ".join(f"--{k}" for k in preprocessing)
        raise InputError(f"{flags} apply to image folders only; the data given are files")

    def source(path: Path | None):
        if path is None:
            return None
        return {"path": str(path), "preprocessing": preprocessing} if preprocessing and path.is_dir() else str(path)

    config = {"method": method, "per_channel": per_channel, "preset": preset, "target": target}
    config.update(precision=precision, percentile=percentile, fallback=fallback, speed_aware=speed_aware)
    if calibration_samples is not None:
        config["calibration_samples"] = calibration_samples
    if time_budget is not None:
        config["time_budget"] = time_budget
    recipe = common_recipe(
        model=model,
        passes=[{"name": "quantize", "config": config}],
        data={"calibration": source(calibration), "eval_data": source(eval_data)},
        output=output,
        force=force,
        threads=threads,
        seed=seed,
        trust_model_code=trust_model_code,
        cache=cache,
        gates={
            "max_accuracy_drop": max_accuracy_drop,
            "min_speedup": min_speedup,
            "min_agreement": min_agreement,
            "min_cosine": min_cosine,
            "default_gates": None if default_gates else False,
        },
    )
    ci_execute = partial(execute, summary_file=summary_file, junit=junit)
    return finish(recipe, save_recipe, dry_run, quiet, as_json, ci_execute)
