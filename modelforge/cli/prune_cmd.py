"""`modelforge prune`: a one-pass recipe (the `prune` pass) built from flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.options import GateOptions, TrainOptions, TrustOptions, common_recipe
from modelforge.report.ci import with_error_outputs


@with_error_outputs
def prune(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="A torch.export program (.pt2) or a Keras 2 model (.h5/.keras, pruned with TF-MOT); "
            "or use --model-factory with --weights."
        ),
    ] = None,
    train_data: Annotated[
        Path | None, typer.Option("--train-data", "-t", help="Labelled training data: .npz or an image folder.")
    ] = None,
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", "-e", help="Evaluation data (labels enable accuracy).")
    ] = None,
    model_factory: Annotated[
        str | None, typer.Option(help="'module:function' building the nn.Module (with --weights).")
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Weights for --model-factory: .safetensors or a state dict (weights-only).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")] = Path("modelforge-out"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
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
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = 1e-3,
    optimizer: TrainOptions.optimizer = "adamw",
    early_stopping: TrainOptions.early_stopping = None,
    hflip: TrainOptions.hflip = False,
    crop_padding: TrainOptions.crop_padding = 0,
    mean: TrainOptions.mean = None,
    std: TrainOptions.std = None,
    color: TrainOptions.color = None,
    checkpoint_dir: TrainOptions.checkpoint_dir = None,
    resume: TrainOptions.resume = False,
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
    code_path: TrustOptions.code_path = None,
    quiet: GateOptions.quiet = False,
    as_json: GateOptions.as_json = False,
    summary_file: GateOptions.summary_file = None,
    junit: GateOptions.junit = None,
) -> int:
    """Prune a PyTorch model (structured channels, magnitude, or 2:4) and fine-tune it; reports accuracy,
    MACs, size and speed vs the original. Writes model.onnx and model.pt2. Keras 2 models are pruned with
    TF-MOT (magnitude or 2:4) and written as model.h5."""
    from functools import partial

    from modelforge.cli.execute import execute
    from modelforge.cli.options import finish
    from modelforge.errors import InputError

    if (model is None) == (model_factory is None):
        raise InputError("give a model file (.pt2) or --model-factory module:function with --weights, not both")
    if model_factory is not None and weights is None:
        raise InputError("--model-factory needs --weights (.safetensors or a state dict)")
    if model is not None and weights is not None:
        raise InputError("--weights goes with --model-factory")
    if train_data is None:
        raise InputError("pruning fine-tunes: pass --train-data DATA (with labels)")
    from modelforge.cli.quantize_cmd import _floats

    preprocessing = {
        k: v
        for k, v in (("mean", _floats(mean, "--mean")), ("std", _floats(std, "--std")), ("color", color))
        if v is not None
    }
    if preprocessing and not any(p is not None and p.is_dir() for p in (train_data, eval_data)):
        raise InputError(f"{', '.join(f'--{k}' for k in preprocessing)} apply to image folders only")

    def source(path: Path | None):
        if path is None:
            return None
        return {"path": str(path), "preprocessing": preprocessing} if preprocessing and path.is_dir() else str(path)

    config = {
        "method": method,
        "scope": scope,
        "importance": importance,
        "schedule": schedule,
        "steps": steps,
        "step_epochs": step_epochs,
        "skip_layers": list(skip_layer or []),
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": optimizer,
            "hflip": hflip,
            "crop_padding": crop_padding,
        },
        "resume": resume,
        "checkpoint_dir": str(checkpoint_dir.resolve()) if checkpoint_dir is not None else None,
    }
    if early_stopping is not None:
        config["train"]["early_stopping"] = early_stopping
    if sparsity is not None:
        config["sparsity"] = sparsity
    if target_macs is not None:
        config["target_macs"] = target_macs
    from modelforge.run.grants import add_code_paths

    add_code_paths(code_path)  # where --model-factory / --*-factory modules are imported from
    recipe = common_recipe(
        model=model if model is not None else weights,
        model_factory=model_factory,
        passes=[{"name": "prune", "config": config}],
        data={"train": source(train_data), "eval_data": source(eval_data)},
        output=output,
        force=force,
        threads=threads,
        seed=seed,
        cache=cache and not resume,
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
