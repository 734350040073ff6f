"""`modelforge distill`: a one-pass recipe (the `distill` pass) built from flags; the teacher is the recipe's model.

Under `torchrun --nproc-per-node N -m modelforge distill ...` the same flags train data-parallel (DDP).
"""

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


def _layer_list(text: str) -> int | list[int]:
    """--student-layers: a count ("6") or comma-separated layer indices ("0,2,4")."""
    from modelforge.errors import InputError

    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise InputError(f"--student-layers {text!r}: expected a layer count (6) or layer indices (0,2,4,7,9,11)")
    values = [int(p) for p in parts]
    return values[0] if len(values) == 1 and "," not in text else values


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
@flag_groups
def distill(
    *,
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
    student_layers: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face encoders: the student is the teacher with fewer layers: a count (6: evenly spread) or "
            "the layer indices to keep (0,2,4,7,9,11), initialised from the teacher's."
        ),
    ] = None,
    data: Annotated[DataFlags, Pick("train_data", "eval_data", *DataFlags.TEXT)],
    output: OutputFlags,
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
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate [default: 3e-3; 5e-5 for Hugging Face encoders].")
    ] = None,
    training: TrainingFlags,
    preprocessing: PreprocessingFlags,
    checkpoints: CheckpointFlags,
    gates: GateFlags,
    runtime: RuntimeFlags,
    recipe_file: RecipeFileFlags,
    hf_model: HFModelFlags,
    grants: Annotated[GrantFlags, Pick("code_path", "trust_remote_code")],
    report: ReportFlags,
) -> int:
    """Distil a teacher into a smaller student (KD at temperature T, hints, or MSE/cosine); reports teacher,
    student and a label-only baseline side by side (accuracy, agreement, params, MACs, size, latency).
    Writes model.onnx and model.pt2 (the student); a Keras teacher and student give model.onnx and the Keras
    student (model.keras or model.h5). A Hugging Face encoder folder is distilled into the teacher with fewer
    layers (--student-layers) and written as a Hugging Face folder. Data-parallel under torchrun."""
    from modelforge.cli.execute import finish, recipe_from_flags
    from modelforge.errors import InputError

    if (teacher is None) == (teacher_factory is None):
        raise InputError("give the teacher as --teacher FILE.pt2 or --teacher-factory module:function, not both")
    if teacher_factory is not None and teacher_weights is None:
        raise InputError("--teacher-factory needs --teacher-weights (.safetensors or a state dict)")
    if teacher is not None and teacher_weights is not None:
        raise InputError("--teacher-weights goes with --teacher-factory")
    if sum(x is not None for x in (student, student_factory, student_from_teacher, student_layers)) != 1:
        raise InputError("give one student: --student FILE.pt2, --student-factory module:function, "
                         "--student-from-teacher W, or --student-layers N (Hugging Face encoders)")  # fmt: skip
    if data.train_data is None:
        raise InputError("distillation trains: pass --train-data DATA (with labels)")
    source = {"path": str(teacher if teacher is not None else teacher_weights)}
    if teacher_factory is not None:
        source["factory"] = teacher_factory
    raw: dict = {"model": source, "passes": []}
    data.fill(raw, preprocessing)
    config = {
        "loss": loss,
        "temperature": temperature,
        "alpha": alpha,
        "hints": _hint_pairs(list(hint or [])),
        "hint_weight": hint_weight,
        "cache_teacher": cache_teacher,
        "baseline": baseline,
        "train": {"epochs": epochs, "batch_size": batch_size},
    }
    if lr is not None or student_layers is None:  # unset: a Hugging Face encoder's engine picks its own
        config["train"]["lr"] = 3e-3 if lr is None else lr
    if student_layers is not None:
        config["student_layers"] = _layer_list(student_layers)
    if student is not None:
        config["student"] = str(student.resolve())
    if student_factory is not None:
        config["student_factory"] = student_factory
    if student_weights is not None:
        config["student_weights"] = str(student_weights.resolve())
    if student_from_teacher is not None:
        config["student_from_teacher"] = student_from_teacher
    raw["passes"].append({"name": "distill", "config": config})
    recipe = recipe_from_flags(raw, training, output, gates, runtime, checkpoints, grants, hf_model)
    return finish(recipe, recipe_file, report)
