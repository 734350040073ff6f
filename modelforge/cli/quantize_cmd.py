"""`modelforge quantize`: a one-pass recipe (the `quantize` pass) built from flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import Pick, flag_groups
from modelforge.cli.groups import (
    DataFlags,
    GateFlags,
    GrantFlags,
    HFModelFlags,
    OutputFlags,
    PreprocessingFlags,
    RecipeFileFlags,
    ReportFlags,
    RuntimeFlags,
)
from modelforge.report.ci import with_error_outputs


@with_error_outputs
@flag_groups
def quantize(
    model: Annotated[
        Path,
        typer.Argument(
            help="Model file: .onnx, .pt2 (torch.export), TorchScript, Keras (.keras/.h5), a SavedModel or a Hugging "
            "Face folder (config.json + safetensors)."
        ),
    ],
    *,
    data: Annotated[DataFlags, Pick("calibration", "eval_data", *DataFlags.TEXT)],
    output: OutputFlags,
    method: Annotated[str, typer.Option(help="Calibration method: minmax, entropy or percentile.")] = "minmax",
    calibration_samples: Annotated[int | None, typer.Option(help="Calibrate on at most N samples.")] = None,
    per_channel: Annotated[bool, typer.Option(help="Per-output-channel weight scales.")] = True,
    preset: Annotated[str, typer.Option(help="Scheme: auto (detect the model family), cnn or transformer.")] = "auto",
    target: Annotated[
        str,
        typer.Option(
            help="Runtime: cpu (onnxruntime), tensorrt (int8 symmetric QDQ), openvino (IR model.xml/.bin, needs "
            "the openvino extra) or auto (measure every installed runtime x precision here, keep the fastest "
            "that meets the gates). Language models: cpu (onnxruntime-genai), openvino (NNCF compress_weights, "
            "llm-openvino extra) or auto (both, the higher decode tokens/s that meets the gates)."
        ),
    ] = "cpu",
    precision: Annotated[
        str,
        typer.Option(
            help="int8, or int4-weights (4-bit MatMul weights); --target openvino also bf16 (CPUs with AMX or "
            "AVX-512 BF16) or fp32."
        ),
    ] = "int8",
    scheme: Annotated[
        str,
        typer.Option(
            help="--target openvino/auto, int8: modelforge (its QDQ scheme as IR), nncf (NNCF's quantization, "
            "openvino extra) or auto (build both, ship the faster one that meets the gates)."
        ),
    ] = "auto",
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
        typer.Option(
            help="Seconds the fallback search may take; then (or on Ctrl-C) the best result so far is kept. "
            "NNCF's accuracy control (--target openvino) gets as many, 300 by default."
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Language models (a *ForCausalLM folder): weight-only int4 or int8 MatMul weights (default int4); "
            "judged by perplexity and next-token KL on --eval-data text."
        ),
    ] = None,
    group_size: Annotated[
        int | None, typer.Option(help="Weight-only: weights per scale, a power of two (default 32).")
    ] = None,
    symmetric: Annotated[
        bool, typer.Option("--symmetric/--asymmetric", help="Weight-only: zero point 0, or one per group.")
    ] = True,
    algo: Annotated[
        str,
        typer.Option(
            help="Weight-only rounding: rtn, hqq (cpu), gptq or awq (openvino: AWQ + scale estimation); gptq "
            "and awq use --calibration text."
        ),
    ] = "rtn",
    keep_lm_head: Annotated[
        str, typer.Option(help="Language models: the lm_head stays float, goes int8, or is quantized (quantize).")
    ] = "float",
    ratio: Annotated[
        float,
        typer.Option(help="Weight-only: share of MatMul weights at --weights; the most sensitive rest stays int8."),
    ] = 1.0,
    preprocessing: Annotated[PreprocessingFlags, Pick("mean", "color", "std")],
    gates: GateFlags,
    runtime: RuntimeFlags,
    recipe_file: RecipeFileFlags,
    hf_model: HFModelFlags,
    grants: Annotated[GrantFlags, Pick("trust_model_code", "trust_remote_code")],
    report: ReportFlags,
) -> int:
    """INT8 post-training quantization with calibration data; reports accuracy, speed and size vs the original.

    Scheme by model family (--preset). Accuracy gates keep the most sensitive nodes in float until met.
    """
    from modelforge.cli.execute import finish, recipe_from_flags

    if data.calibration is None and weights is None and not _is_language_model(model):
        from modelforge.errors import InputError

        # Worded as click words a required option: --calibration is optional only for a language model.
        raise InputError("missing option '--calibration' / '-c'", hint="modelforge quantize --help")
    raw: dict = {"model": {"path": str(model)}, "passes": []}
    data.fill(raw, preprocessing, files_note="; the data given are files")
    config = {"method": method, "per_channel": per_channel, "preset": preset, "target": target}
    config.update(precision=precision, percentile=percentile, fallback=fallback, speed_aware=speed_aware)
    if scheme != "auto":
        config["scheme"] = scheme
    if weights is not None or _is_language_model(model):
        config.update(weights=weights or "int4", symmetric=symmetric, algo=algo, keep_lm_head=keep_lm_head)
        config.update(ratio=ratio, **({"group_size": group_size} if group_size is not None else {}))
    if calibration_samples is not None:
        config["calibration_samples"] = calibration_samples
    if time_budget is not None:
        config["time_budget"] = time_budget
    raw["passes"].append({"name": "quantize", "config": config})
    recipe = recipe_from_flags(raw, output, gates, runtime, grants, hf_model)
    return finish(recipe, recipe_file, report)


def _is_language_model(model: Path) -> bool:
    """A Hugging Face folder whose config.json names a *ForCausalLM (read loosely: the run checks it properly)."""
    import json

    config = model / "config.json"
    if not config.is_file() or config.is_symlink() or config.stat().st_size > 1 << 20:
        return False
    try:
        names = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return False
    return bool(names) and isinstance(names[0], str) and names[0].endswith("ForCausalLM")
