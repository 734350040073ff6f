"""`modelforge distill`: a one-pass recipe (the `distill` pass) built from flags; the teacher is the recipe's model.

Under `torchrun --nproc-per-node N -m modelforge distill ...` the same flags train data-parallel (DDP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.options import GateOptions, TrainOptions, TrustOptions, common_recipe
from modelforge.report.ci import with_error_outputs


def _hint_pairs(hints: list[str]) -> list[dict[str, str]]:
    from modelforge.errors import InputError

    pairs = []
    for hint in hints:
        teacher, sep, student = hint.partition(":")
        if not sep or not teacher or not student:
            raise InputError(f"--hint {hint!r}: expected TEACHER_LAYER:STUDENT_LAYER, e.g. block2:block2")
        pairs.append({"teacher": teacher, "student": student})
    return pairs


@with_error_outputs
def distill(
    teacher: Annotated[
        Path | None,
        typer.Option(
            help="The teacher: a torch.export program (.pt2) or a Keras file (.keras/.h5); or --teacher-factory."
        ),
    ] = None,
    teacher_factory: Annotated[
        str | None, typer.Option(help="'module:function' building the teacher nn.Module (with --teacher-weights).")
    ] = None,
    teacher_weights: Annotated[
        Path | None, typer.Option(help="Weights for --teacher-factory: .safetensors or a state dict.")
    ] = None,
    student: Annotated[
        Path | None, typer.Option(help="The student: a .pt2 program, or a Keras file (.keras/.h5) for a Keras teacher.")
    ] = None,
    student_factory: Annotated[
        str | None, typer.Option(help="'module:function' building the student (fresh weights, or --student-weights).")
    ] = None,
    student_weights: Annotated[Path | None, typer.Option(help="Weights for --student-factory.")] = None,
    student_from_teacher: Annotated[
        float | None,
        typer.Option(help="Student = the teacher keeping this share of channels (structured pruning), in (0, 1)."),
    ] = None,
    train_data: Annotated[
        Path | None, typer.Option("--train-data", "-t", help="Labelled training data: .npz or an image folder.")
    ] = None,
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", "-e", help="Evaluation data (labels enable accuracy).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")] = Path("modelforge-out"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    loss: Annotated[str, typer.Option(help="kl (soft targets), mse or cosine (match outputs).")] = "kl",
    temperature: Annotated[float, typer.Option(help="kl: softmax temperature T (the loss is scaled by T^2).")] = 4.0,
    alpha: Annotated[float, typer.Option(help="Weight of the teacher term; 1 - alpha on the labels.")] = 0.9,
    hint: Annotated[
        list[str] | None,
        typer.Option("--hint", help="TEACHER_LAYER:STUDENT_LAYER feature pair, learned 1x1 projection (repeatable)."),
    ] = None,
    hint_weight: Annotated[float, typer.Option(help="Weight of each hint term.")] = 1.0,
    cache_teacher: Annotated[
        bool,
        typer.Option("--cache-teacher/--no-cache-teacher", help="Cache teacher outputs per sample (no augmentation)."),
    ] = True,
    baseline: Annotated[
        bool | None,
        typer.Option(
            "--baseline/--no-baseline",
            help="Also train the student on labels alone, same budget (default: on when samples x epochs <= 500k).",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Training batch size (global: split over torchrun ranks).")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 3e-3,
    optimizer: TrainOptions.optimizer = "adamw",
    schedule: Annotated[str, typer.Option(help="constant, cosine or step.")] = "cosine",
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
    """Distil a teacher into a smaller student (KD at temperature T, hints, or MSE/cosine); reports teacher,
    student and a label-only baseline side by side (accuracy, agreement, params, MACs, size, latency).
    Writes model.onnx and model.pt2 (the student); a Keras teacher and student give model.onnx and the Keras
    student (model.keras or model.h5). Data-parallel under torchrun."""
    from functools import partial

    from modelforge.cli.execute import execute
    from modelforge.cli.options import finish
    from modelforge.errors import InputError

    if (teacher is None) == (teacher_factory is None):
        raise InputError("give the teacher as --teacher FILE.pt2 or --teacher-factory module:function, not both")
    if teacher_factory is not None and teacher_weights is None:
        raise InputError("--teacher-factory needs --teacher-weights (.safetensors or a state dict)")
    if teacher is not None and teacher_weights is not None:
        raise InputError("--teacher-weights goes with --teacher-factory")
    if sum(x is not None for x in (student, student_factory, student_from_teacher)) != 1:
        raise InputError("give one student: --student FILE.pt2, --student-factory module:function, or "
                         "--student-from-teacher W")  # fmt: skip
    if train_data is None:
        raise InputError("distillation trains: pass --train-data DATA (with labels)")
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

    train = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "schedule": schedule,
        "hflip": hflip,
        "crop_padding": crop_padding,
    }
    if early_stopping is not None:
        train["early_stopping"] = early_stopping
    config = {
        "loss": loss,
        "temperature": temperature,
        "alpha": alpha,
        "hints": _hint_pairs(list(hint or [])),
        "hint_weight": hint_weight,
        "cache_teacher": cache_teacher,
        "baseline": baseline,
        "train": train,
        "resume": resume,
        "checkpoint_dir": str(checkpoint_dir.resolve()) if checkpoint_dir is not None else None,
    }
    if student is not None:
        config["student"] = str(student.resolve())
    if student_factory is not None:
        config["student_factory"] = student_factory
    if student_weights is not None:
        config["student_weights"] = str(student_weights.resolve())
    if student_from_teacher is not None:
        config["student_from_teacher"] = student_from_teacher
    from modelforge.run.grants import add_code_paths

    add_code_paths(code_path)  # where --model-factory / --*-factory modules are imported from
    recipe = common_recipe(
        model=teacher if teacher is not None else teacher_weights,
        model_factory=teacher_factory,
        passes=[{"name": "distill", "config": config}],
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
