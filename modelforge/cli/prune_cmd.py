"""`modelforge prune`: a one-pass recipe (the `prune` pass) built from flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import Pick, flag_groups
from modelforge.cli.groups import (
    CheckpointFlags,
    DataFlags,
    GateFlags,
    GrantFlags,
    HFModelFlags,
    OutputFlags,
    PreprocessingFlags,
    RecipeFileFlags,
    ReportFlags,
    RuntimeFlags,
    TrainingFlags,
)
from modelforge.report.ci import with_error_outputs


@with_error_outputs
@flag_groups
def prune(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="A torch.export program (.pt2) or a Keras 2 model (.h5/.keras, pruned with TF-MOT); "
            "or use --model-factory with --weights."
        ),
    ] = None,
    *,
    data: Annotated[DataFlags, Pick("train_data", "eval_data", *DataFlags.TEXT)],
    model_factory: Annotated[
        str | None, typer.Option(help="'module:function' building the nn.Module (with --weights).")
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Weights for --model-factory: .safetensors or a state dict (weights-only).")
    ] = None,
    output: OutputFlags,
    method: Annotated[str, typer.Option(help="structured, magnitude or 2:4.")] = "structured",
    sparsity: Annotated[
        float | None, typer.Option(help="Share of channels (structured) or weights (magnitude) removed, in (0, 1).")
    ] = None,
    target_macs: Annotated[float | None, typer.Option(help="structured: keep at most this share of MACs.")] = None,
    scope: Annotated[str, typer.Option(help="magnitude: global or layer.")] = "global",
    importance: Annotated[str, typer.Option(help="structured: l1, l2, taylor or bn-scale.")] = "l1",
    schedule: Annotated[str, typer.Option(help="one-shot or gradual.")] = "one-shot",
    steps: Annotated[int, typer.Option(help="gradual: pruning steps.")] = 4,
    step_epochs: Annotated[int, typer.Option(help="gradual: fine-tuning epochs between steps.")] = 1,
    skip_layer: Annotated[
        list[str] | None, typer.Option("--skip-layer", help="A layer never pruned (repeatable).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs after the last pruning step.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 64,
    lr: Annotated[
        float | None, typer.Option(help="Fine-tuning learning rate [default: 1e-3; 5e-5 for Hugging Face encoders].")
    ] = None,
    head_sparsity: Annotated[
        float | None,
        typer.Option(help="Hugging Face encoders: share of attention heads removed per layer [default: --sparsity]."),
    ] = None,
    training: Annotated[TrainingFlags, Pick("optimizer", "early_stopping", "hflip", "crop_padding")],
    preprocessing: PreprocessingFlags,
    checkpoints: CheckpointFlags,
    gates: GateFlags,
    runtime: RuntimeFlags,
    recipe_file: RecipeFileFlags,
    hf_model: HFModelFlags,
    grants: Annotated[GrantFlags, Pick("code_path", "trust_remote_code")],
    report: ReportFlags,
) -> int:
    """Prune a PyTorch model (structured channels, magnitude, or 2:4) and fine-tune it; reports accuracy,
    MACs, size and speed vs the original. Writes model.onnx and model.pt2. Keras 2 models are pruned with
    TF-MOT (magnitude or 2:4) and written as model.h5. A Hugging Face encoder folder loses attention heads and
    FFN neurons (--sparsity, --head-sparsity) and is written as a Hugging Face folder."""
    from modelforge.cli.execute import finish, recipe_from_flags
    from modelforge.errors import InputError

    if (model is None) == (model_factory is None):
        raise InputError("give a model file (.pt2) or --model-factory module:function with --weights, not both")
    if model_factory is not None and weights is None:
        raise InputError("--model-factory needs --weights (.safetensors or a state dict)")
    if model is not None and weights is not None:
        raise InputError("--weights goes with --model-factory")
    if data.train_data is None:
        raise InputError("pruning fine-tunes: pass --train-data DATA (with labels)")
    source = {"path": str(model if model is not None else weights)}
    if model_factory is not None:
        source["factory"] = model_factory
    raw: dict = {"model": source, "passes": []}
    data.fill(raw, preprocessing)
    config = {
        "method": method,
        "scope": scope,
        "importance": importance,
        "schedule": schedule,
        "steps": steps,
        "step_epochs": step_epochs,
        "skip_layers": list(skip_layer or []),
        "train": {"epochs": epochs, "batch_size": batch_size},
    }
    if sparsity is not None:
        config["sparsity"] = sparsity
    if head_sparsity is not None:
        config["head_sparsity"] = head_sparsity
    if lr is not None or model is None or not (model / "config.json").is_file():
        config["train"]["lr"] = 1e-3 if lr is None else lr  # unset: a Hugging Face encoder's engine picks its own
    if target_macs is not None:
        config["target_macs"] = target_macs
    raw["passes"].append({"name": "prune", "config": config})
    recipe = recipe_from_flags(raw, training, output, gates, runtime, checkpoints, grants, hf_model)
    return finish(recipe, recipe_file, report)
