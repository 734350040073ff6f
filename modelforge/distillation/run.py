"""The distillation procedure behind the `distill` pass: build the student, train it against the teacher with the
shared training loop, train the same student on labels alone with the same budget (the baseline), measure all
three, export the best student.

Checkpoints (resumable with `resume`, as pruning's):

    checkpoints/student/last.pt, best.pt     the distilled student (plus its hint projections, if any)
    checkpoints/baseline/last.pt, best.pt    the label-only baseline

`run_distillation` takes the teacher, the config, the data, the seed, the folders and a Progress, and returns a
`DistillResult` (the student's file, the checkpoints the output keeps, the stage's figures): it knows no pass.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.distillation.config import BASELINE_AUTO_LIMIT, DistillResult
from modelforge.errors import InputError
from modelforge.progress import Progress

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.distillation.config import DistillConfig


def check_source(teacher: Path, fmt: str, config: dict[str, Any]) -> None:
    """Before any work: teacher and student in different frameworks, or PyTorch-only options for a Keras
    teacher, are refused (exit 2), as is a student file that is not a .pt2 archive."""
    layers_given = config.get("student_layers") is not None
    if fmt == "huggingface" and not layers_given:
        raise InputError(
            "a Hugging Face teacher is distilled into itself with fewer layers", hint="pass --student-layers N"
        )
    if layers_given and fmt != "huggingface":
        raise InputError(f"student_layers applies to a Hugging Face folder teacher, not a {fmt} model")
    student = config.get("student")
    keras_student = student is not None and Path(student).suffix.lower() in (".keras", ".h5", ".hdf5")
    if fmt in ("keras", "savedmodel") or keras_student:
        from modelforge.distillation.tensorflow import check_keras_distill

        check_keras_distill(teacher, fmt, config)
    elif student is not None and Path(student).is_file():  # not a .pt2 archive: exit 2 before any work
        from modelforge.model.formats import check_bytes

        check_bytes(Path(student), ".pt2", role="student")


def _tensors(train_data: BoundDataset | None, eval_data: BoundDataset | None):
    from modelforge.training import load_tensors

    if train_data is None:
        raise InputError("distillation needs training data", hint="pass --train-data DATA")
    train = load_tensors(train_data)
    if train[1] is None:
        raise InputError(f"training data {train_data.dataset.path} has no labels")
    evaluation = load_tensors(eval_data) if eval_data is not None else None
    return train, evaluation


def _agreement(module, teacher_top1, inputs: tuple) -> float:
    import torch

    from modelforge.distillation.students import first_output

    with torch.no_grad():
        top1 = torch.cat([first_output(module, tuple(t[i : i + 256] for t in inputs)).argmax(1)
                          for i in range(0, inputs[0].shape[0], 256)])  # fmt: skip
    return float((top1 == teacher_top1).float().mean())


def _measure(module, eval_t, teacher_top1, example) -> dict[str, Any]:
    from modelforge.distillation.students import sizes
    from modelforge.training import accuracy

    row = sizes(module, example)
    inputs, labels = eval_t
    row["accuracy"] = accuracy(module, inputs, labels) if labels is not None else None
    row["agreement_with_teacher"] = _agreement(module, teacher_top1, inputs)
    return row


def _hinted(student, teacher, config, example, seed: int):
    """Wrap the student with its hint projections; returns (wrapper, teacher tap, teacher layer names)."""
    import torch

    from modelforge.distillation.losses import FeatureTap, hint_projections, with_hints

    pairs = [(h.teacher, h.student) for h in config.hints]
    teacher_tap = FeatureTap(teacher, [t for t, _ in pairs], "teacher")
    student_tap = FeatureTap(student, [s for _, s in pairs], "student")
    with torch.no_grad():
        teacher.eval()(*example)
        student.eval()(*example)
    for tap, role in ((teacher_tap, "teacher"), (student_tap, "student")):
        silent = [n for n in (t if role == "teacher" else s for t, s in pairs) if n not in tap.features]
        if silent:
            raise InputError(
                f"hint layer {silent[0]!r} of the {role} never runs as a module (a .pt2 program keeps only its "
                "leaf layers: convolutions, BatchNorm, linear)",
                hint="name a leaf layer, e.g. block2.bn2",
            )
    shapes_t = {n: tuple(v.shape) for n, v in teacher_tap.features.items()}
    shapes_s = {n: tuple(v.shape) for n, v in student_tap.features.items()}
    student_tap.close()
    torch.manual_seed(seed)
    projections = hint_projections(shapes_s, shapes_t, pairs)
    return with_hints(student, projections, [s for _, s in pairs]), teacher_tap, [t for t, _ in pairs]


def run_distillation(
    teacher,
    config: DistillConfig,
    *,
    train: BoundDataset | None,
    evaluation: BoundDataset | None,
    seed: int,
    workdir: Path,
    checkpoints: Path,
    progress: Progress,
) -> DistillResult:
    """Distil `teacher` into the configured student, checkpointing into `checkpoints`; the student's .pt2 is
    written in `workdir`.

    Once done, the student's best.pt and last.pt are copied into `workdir`/kept for the output, and a folder the
    user did not name (the cache's) is removed (modelforge.training.checkpoints)."""
    from modelforge.training.checkpoints import finish_checkpoints

    path, record = _distill(teacher, config, train, evaluation, seed, workdir, checkpoints, progress)
    named = config.checkpoint_dir is not None
    kept = finish_checkpoints(checkpoints / "student", checkpoints, workdir, named=named, record=record)
    return DistillResult(path, record, kept)


def _distill(
    teacher,
    config: DistillConfig,
    train_data: BoundDataset | None,
    eval_data: BoundDataset | None,
    seed: int,
    workdir: Path,
    checkpoints: Path,
    progress: Progress,
) -> tuple[Path, dict[str, Any]]:
    """Student, training, baseline and measurements; returns the student's .pt2 and the stage record."""
    import torch

    from modelforge.distillation.losses import DistillationLoss
    from modelforge.distillation.students import check_output_shapes, load_student
    from modelforge.distillation.teacher_cache import TeacherCache, cache_disabled
    from modelforge.model.torch.export import save_program, trace_check
    from modelforge.training import distributed, train

    torch.manual_seed(seed)
    train_t, eval_t = _tensors(train_data, eval_data)
    example = tuple(t[:2] for t in train_t[0])
    teacher.eval()
    student = load_student(config, teacher, example)
    for parameter in teacher.parameters():  # the teacher only runs in inference mode
        parameter.requires_grad_(False)
    teacher_shape, _ = check_output_shapes(teacher, student, example)
    trace_check(student, example, "the student")
    if config.loss == "kl" and len(teacher_shape) != 2:
        raise InputError(
            f"loss kl needs class scores [batch, classes]; the teacher's output is {teacher_shape}",
            hint="use loss mse or cosine for regression or embedding teachers",
        )
    initial = copy.deepcopy(student)  # the baseline starts where the distilled student starts
    from modelforge.training.checkpoints import check_checkpoint_dir

    check_checkpoint_dir(checkpoints)  # a link in it is refused before anything there is read or written
    if not config.resume and config.checkpoint_dir is None and distributed.is_primary():
        shutil.rmtree(checkpoints, ignore_errors=True)  # the cache's folder: a fresh run starts clean
    samples = int(train_t[1].shape[0])
    augmenting = config.train.hflip or config.train.crop_padding > 0

    cache, cache_record = None, None
    if not config.cache_teacher:
        cache_record = cache_disabled("cache_teacher is off")
    elif augmenting:
        cache_record = cache_disabled("augmentation is on: the teacher sees a different input each epoch")
    elif config.hints:
        cache_record = cache_disabled("hint layers need the teacher's features for every batch")
    else:
        cache = TeacherCache.build(teacher, train_t[0])

    hints, trained = None, student
    if config.hints:
        trained, tap, teacher_layers = _hinted(student, teacher, config, example, seed)
        hints = (tap, trained, teacher_layers)
    loss = DistillationLoss(
        teacher,
        kind=config.loss,
        temperature=config.temperature,
        alpha=config.alpha,
        cache=cache,
        hints=hints,
        hint_weight=config.hint_weight,
    )
    started = time.perf_counter()
    result = train(
        trained,
        train_t,
        eval_t if eval_t and eval_t[1] is not None else None,
        config.train,
        checkpoint_dir=checkpoints / "student",
        seed=seed,
        progress=progress,
        resume=config.resume,
        loss=loss,
        description="distill",
    )
    distill_seconds = time.perf_counter() - started
    if hints is not None:
        hints[0].close()
        trained.tap.close()
    if cache is not None:
        cache_record = cache.record(len(result.history))

    baseline_on = (
        config.baseline if config.baseline is not None else samples * config.train.epochs <= BASELINE_AUTO_LIMIT
    )
    baseline_result, baseline_seconds = None, None
    if baseline_on:
        started = time.perf_counter()
        baseline_result = train(
            initial,
            train_t,
            eval_t if eval_t and eval_t[1] is not None else None,
            config.train,
            checkpoint_dir=checkpoints / "baseline",
            seed=seed,
            progress=progress,
            resume=config.resume,
            description="label-only baseline",
        )
        baseline_seconds = time.perf_counter() - started

    result_path = workdir / "model.pt2"
    save_program(student, example, result_path)
    record: dict[str, Any] = {
        "loss": config.loss,
        "temperature": config.temperature,
        "alpha": config.alpha,
        "hints": [h.model_dump() for h in config.hints],
        "student_source": _student_source(config),
        "output_shape": teacher_shape,
        "train_samples": samples,
        "teacher_cache": cache_record,
        "distributed": {"world_size": distributed.world_size() if distributed.active() else 1},
        "seconds_distill": round(distill_seconds, 3),
        "seconds_baseline": round(baseline_seconds, 3) if baseline_seconds is not None else None,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "training_curve": result.history,
        "baseline_training_curve": baseline_result.history if baseline_result else None,
        "baseline": "label-only student, same budget" if baseline_on else "off",
    }
    if eval_t is not None:
        with torch.no_grad():
            teacher_top1 = torch.cat([
                first_output_top1(teacher, tuple(t[i : i + 256] for t in eval_t[0]))
                for i in range(0, eval_t[0][0].shape[0], 256)
            ])  # fmt: skip
        models = {"teacher": teacher, "student": student}
        if baseline_result is not None:
            models["baseline"] = initial
        record["models"] = {name: _measure(m, eval_t, teacher_top1, example) for name, m in models.items()}
        t = record["models"]["teacher"]
        s = record["models"]["student"]
        record["params_ratio"] = s["params"] / t["params"] if t["params"] else None
        record["macs_ratio"] = s["macs"] / t["macs"] if t["macs"] else None
        if t["accuracy"]:
            record["accuracy_share_of_teacher"] = s["accuracy"] / t["accuracy"]
        if baseline_result is not None and s["accuracy"] is not None:
            record["gain_over_baseline_pp"] = 100 * (s["accuracy"] - record["models"]["baseline"]["accuracy"])
    record["program_bytes_student"] = result_path.stat().st_size
    record["checkpoints"] = str(checkpoints)
    return result_path, record


def first_output_top1(module, inputs: tuple):
    from modelforge.distillation.students import first_output

    return first_output(module, inputs).argmax(1)


def _student_source(config) -> str:
    if config.student is not None:
        return f"program {config.student}"
    if config.student_factory is not None:
        weights = f" with weights {config.student_weights}" if config.student_weights else " (fresh weights)"
        return f"factory {config.student_factory}{weights}"
    if config.student_layers is not None:
        return f"the teacher with layers {config.student_layers} kept (weights copied)"
    return f"the teacher at width {config.student_from_teacher:g} (structured channel pruning, L1)"
