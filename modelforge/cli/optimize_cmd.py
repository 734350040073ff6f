"""`modelforge optimize`: search prune ratio x fine-tuning x precision x runtime for the model that meets a latency
goal at the least accuracy cost; a recipe with an `optimize:` section built from flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import Pick, flag_groups
from modelforge.cli.groups import DataFlags, OutputFlags, PreprocessingFlags, RecipeFileFlags, ReportFlags, RuntimeFlags
from modelforge.report.ci import with_error_outputs


def _names(text: str | None, flag: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        from modelforge.errors import InputError

        raise InputError(f"{flag} needs at least one value, e.g. {flag} a,b")
    return names


def _numbers(text: str | None, flag: str, expected: str) -> list[float] | None:
    from modelforge.errors import InputError

    names = _names(text, flag)
    if names is None:
        return None
    try:
        return [float(n) for n in names]
    except ValueError:
        raise InputError(f"{flag}: expected {expected}, got {text!r}") from None


@with_error_outputs
@flag_groups
def optimize(
    model: Annotated[Path, typer.Argument(help="A torch.export program (.pt2); an ONNX model with --prune-ratios 0.")],
    *,
    data: Annotated[DataFlags, Pick("train_data", "eval_data", "calibration")],
    latency_p99_ms: Annotated[
        float | None,
        typer.Option(help="The SLO: the winner's p99 latency in ms at --batch and --threads, on its 95% upper bound."),
    ] = None,
    speedup: Annotated[
        float | None, typer.Option(help="Instead of (or with) an SLO: original p50 / winner p50.")
    ] = None,
    max_accuracy_drop: Annotated[float, typer.Option(help="Accuracy the winner may lose, in points.")] = 1.0,
    objective: Annotated[str, typer.Option(help="accuracy, latency or size: decides among those that qualify.")] = (
        "accuracy"
    ),
    prune_ratios: Annotated[
        str | None, typer.Option(help="Structured prune ratios to try, e.g. 0.3,0.5,0.7 (0: no pruning).")
    ] = None,
    mac_targets: Annotated[
        str | None,
        typer.Option(help="Shares of the MACs to keep, e.g. 0.5,0.25: each becomes the prune ratio reaching it."),
    ] = None,
    fine_tune: Annotated[str | None, typer.Option(help="kd (the original as teacher), labels, or kd,labels.")] = None,
    precisions: Annotated[str | None, typer.Option(help="fp32, bf16, int8 (default: each this CPU offers).")] = None,
    runtimes: Annotated[str | None, typer.Option(help="onnxruntime, openvino (default: every installed one).")] = None,
    epochs: Annotated[int, typer.Option(help="Most fine-tuning epochs per trial (ASHA stops the weak earlier).")] = 3,
    batch: Annotated[int, typer.Option(help="Batch size the latency goal applies to.")] = 1,
    time_budget: Annotated[
        float | None, typer.Option(help="Seconds the whole search may take; the best so far is kept.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Run the trials on this Ray cluster (default: a local Ray for the run).")
    ] = None,
    output: OutputFlags,
    preprocessing: PreprocessingFlags,
    runtime: RuntimeFlags,
    recipe_file: Annotated[RecipeFileFlags, Pick("save_recipe")],
    report: ReportFlags,
) -> int:
    """Find the model that meets a latency goal at the least accuracy cost: prune ratios x fine-tuning (KD or
    labels) x precision x runtime. Latency is screened before any training; fine-tuning runs as Ray Tune trials
    under ASHA; the finalists are quantized and timed interleaved here. Writes the winner as a normal output
    (its recipe.resolved.yaml replays the winning chain) with the search in report.json and search.json."""
    from modelforge.cli.execute import finish, recipe_from_flags

    section: dict = {
        "latency_p99_ms": latency_p99_ms,
        "speedup": speedup,
        "max_accuracy_drop": max_accuracy_drop,
        "objective": objective,
        "epochs": epochs,
        "time_budget": time_budget,
        "ray_address": ray_address,
    }
    optional = {
        "prune_ratios": _numbers(prune_ratios, "--prune-ratios", "numbers in [0, 1) like 0.3,0.5"),
        "mac_targets": _numbers(mac_targets, "--mac-targets", "shares in (0, 1) like 0.5,0.25"),
        "fine_tune": _names(fine_tune, "--fine-tune"),
        "precisions": _names(precisions, "--precisions"),
        "runtimes": _names(runtimes, "--runtimes"),
    }
    section.update({k: v for k, v in optional.items() if v is not None})
    raw: dict = {"model": {"path": str(model)}, "optimize": section}
    data.fill(raw, preprocessing)
    recipe = recipe_from_flags(raw, output, runtime)
    recipe.evaluate.latency.batch_size = batch
    return finish(recipe, recipe_file, report)
