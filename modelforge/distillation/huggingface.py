"""Distil a Hugging Face encoder the way DistilBERT was made: the student is the teacher with fewer transformer
layers, initialised from the layers it keeps (embeddings, kept layers, pooler and classifier copied), so it starts
close to the teacher and needs far less training than a fresh model.

It is trained with the existing distillation losses (soft targets at temperature T against the labels, weighted by
alpha) plus one hidden-state hint per student layer: student layer i is pulled towards the output of the teacher
layer it was copied from, through a linear projection that starts as the identity (the two match exactly at the
start for the first kept layer). Training is modelforge.training's loop; the student is saved with
`save_pretrained(safe_serialization=True)`, its config.json saying its own `num_hidden_layers`.

`run_hf_distillation` takes the teacher (a transformers model object), the distill config (`student_layers`), the
bound data sets (model input name -> token-id arrays), the seed, the folders and a Progress, and returns a
`DistillResult` whose path is the student's folder: it knows no pass.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.distillation.config import DistillResult, HintPair
from modelforge.errors import InputError
from modelforge.progress import Progress

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.distillation.config import DistillConfig

WHAT = "layer-dropping distillation (student_layers)"


def kept_layers(count: int, spec: int | list[int]) -> list[int]:
    """The teacher layers the student keeps. A count spreads them evenly with the first and the last kept
    (12 -> 6 gives 0, 2, 4, 7, 9, 11: DistilBERT's choice); a list is taken as given, ascending."""
    if isinstance(spec, int):
        if spec >= count:
            raise InputError(f"student_layers {spec}: the teacher has {count} layers; the student must keep fewer")
        if spec == 1:
            return [0]
        return [math.floor(i * (count - 1) / (spec - 1) + 0.5) for i in range(spec)]
    layers = list(spec)
    if any(i < 0 or i >= count for i in layers):
        raise InputError(f"student_layers {layers}: the teacher has layers 0..{count - 1}")
    if layers != sorted(set(layers)):
        raise InputError(f"student_layers {layers}: list distinct layer indices in ascending order")
    if len(layers) == count:
        raise InputError(f"student_layers {layers} keeps every layer of the {count}-layer teacher")
    return layers


def layer_dropped_student(teacher, kept: list[int]):
    """A copy of the teacher holding only the `kept` encoder layers (in order); config.num_hidden_layers updated,
    each kept layer's layer_idx renumbered (the attention cache is indexed by it)."""
    import torch

    from modelforge.pruning.hf_encoder import encoder_layers

    student = copy.deepcopy(teacher)
    layers, prefix = encoder_layers(student, WHAT)
    chosen = torch.nn.ModuleList([layers[i] for i in kept])
    for new_index, layer in enumerate(chosen):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    parent_name, _, attribute = prefix.rpartition(".")
    setattr(student.get_submodule(parent_name), attribute, chosen)
    student.config.num_hidden_layers = len(kept)
    pruned = teacher.config.pruned_heads or {}  # keyed by layer index: follow the kept layers to their new places
    student.config.pruned_heads = {i: list(pruned[t]) for i, t in enumerate(kept) if pruned.get(t)}
    return student


def hint_pairs(prefix: str, kept: list[int]) -> list[HintPair]:
    """Student layer i -> the teacher layer it was copied from, as layer names inside the logits wrappers."""
    return [HintPair(teacher=f"model.{prefix}.{t}", student=f"model.{prefix}.{i}") for i, t in enumerate(kept)]


def _identity_projections(wrapper) -> None:
    """The copied layer's features already live in the teacher's space: start each hint map at the identity."""
    import torch

    with torch.no_grad():
        for projection in wrapper.projections:
            if projection.weight.shape[0] == projection.weight.shape[1]:
                projection.weight.copy_(torch.eye(projection.weight.shape[0]))


def run_hf_distillation(
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
    """Distil the Hugging Face `teacher` into its layer-dropped student; the student's folder (config.json +
    model.safetensors) is written to `workdir`/student. Checkpoints as run_distillation's."""
    from modelforge.training.checkpoints import finish_checkpoints

    if config.student_layers is None:
        raise InputError("a Hugging Face teacher is distilled into the teacher with fewer layers: set student_layers")
    folder, record = _distill(teacher, config, train, evaluation, seed, workdir, checkpoints, progress)
    named = config.checkpoint_dir is not None
    kept = finish_checkpoints(checkpoints / "student", checkpoints, workdir, named=named, record=record)
    return DistillResult(folder, record, kept)


def _distill(teacher, config, train_data, eval_data, seed: int, workdir: Path, checkpoints: Path, progress: Progress):
    import shutil

    import torch

    from modelforge.distillation.losses import DistillationLoss
    from modelforge.distillation.run import _hinted, _measure, _tensors, first_output_top1
    from modelforge.distillation.teacher_cache import TeacherCache, cache_disabled
    from modelforge.pruning.hf_encoder import (
        check_sequence_classifier,
        encoder_layers,
        logits_module,
        transformer_train,
    )
    from modelforge.training import device_for
    from modelforge.training import train as train_loop
    from modelforge.training.checkpoints import check_checkpoint_dir

    check_sequence_classifier(teacher, WHAT)
    layers, prefix = encoder_layers(teacher, WHAT)
    if config.loss != "kl":
        raise InputError(f"loss {config.loss}: a sequence classifier is distilled with loss kl (soft targets)")
    if config.hints:
        raise InputError("hints are set by student_layers for a Hugging Face teacher (student layer i -> the teacher "
                         "layer it was copied from); leave hints empty, or hint_weight 0 to turn them off")  # fmt: skip
    kept = kept_layers(len(layers), config.student_layers)
    torch.manual_seed(seed)
    train_t, eval_t = _tensors(train_data, eval_data)
    names = tuple(train_data.keys)
    teacher.eval()
    for parameter in teacher.parameters():  # the teacher only runs in inference mode
        parameter.requires_grad_(False)
    student = layer_dropped_student(teacher, kept)
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    teacher_w, student_w = logits_module(teacher, names), logits_module(student, names)
    teacher_w.to(device_for(config.train))
    example = tuple(t[:2] for t in train_t[0])

    check_checkpoint_dir(checkpoints)  # a link in it is refused before anything there is read or written
    if not config.resume and config.checkpoint_dir is None:
        shutil.rmtree(checkpoints, ignore_errors=True)  # the cache's folder: a fresh run starts clean
    pairs = hint_pairs(prefix, kept) if config.hint_weight > 0 else []
    hints, trained, cache, cache_record = None, student_w, None, None
    if pairs:
        trained, tap, teacher_layers = _hinted(
            student_w, teacher_w, config.model_copy(update={"hints": pairs}), example, seed
        )
        _identity_projections(trained)
        hints = (tap, trained, teacher_layers)
        cache_record = cache_disabled("hint layers need the teacher's features for every batch")
    elif config.cache_teacher:
        cache = TeacherCache.build(teacher_w, train_t[0])
    else:
        cache_record = cache_disabled("cache_teacher is off")
    loss = DistillationLoss(
        teacher_w,
        kind="kl",
        temperature=config.temperature,
        alpha=config.alpha,
        cache=cache,
        hints=hints,
        hint_weight=config.hint_weight,
    )
    evaluated = eval_t if eval_t and eval_t[1] is not None else None
    train_config = transformer_train(config)
    started = time.perf_counter()
    result = train_loop(
        trained,
        train_t,
        evaluated,
        train_config,
        checkpoint_dir=checkpoints / "student",
        seed=seed,
        progress=progress,
        resume=config.resume,
        loss=loss,
        description="distill",
    )
    seconds = time.perf_counter() - started
    if hints is not None:
        hints[0].close()
        trained.tap.close()
    if cache is not None:
        cache_record = cache.record(len(result.history))
    teacher_w.to("cpu")

    folder = workdir / "student"
    student.save_pretrained(str(folder), safe_serialization=True)
    from modelforge.pruning.huggingface import check_reload

    reload_diff = check_reload(folder, student_w, example, "distill")
    record: dict[str, Any] = {
        "loss": "kl",
        "temperature": config.temperature,
        "alpha": config.alpha,
        "student_source": f"the teacher with layers {kept} of {len(layers)} kept (weights copied)",
        "teacher_layers": len(layers),
        "student_layers": kept,
        "hints": [h.model_dump() for h in pairs] if pairs else [],  # the same records run_distillation writes
        "hint_weight": config.hint_weight,
        "learning_rate": train_config.lr,
        "train_samples": int(train_t[1].shape[0]),
        "teacher_cache": cache_record,
        "seconds_distill": round(seconds, 3),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "training_curve": result.history,
        "reload_max_abs_diff": reload_diff,
        "baseline": "off (a Hugging Face student starts from the teacher's layers)",
    }
    if eval_t is not None:
        with torch.no_grad():
            top1 = torch.cat([first_output_top1(teacher_w, tuple(t[i : i + 256] for t in eval_t[0]))
                              for i in range(0, eval_t[0][0].shape[0], 256)])  # fmt: skip
        models = {"teacher": teacher_w, "student": student_w}
        record["models"] = {name: _measure(m, eval_t, top1, example) for name, m in models.items()}
        t, s = record["models"]["teacher"], record["models"]["student"]
        record["params_ratio"] = s["params"] / t["params"] if t["params"] else None
        record["macs_ratio"] = s["macs"] / t["macs"] if t["macs"] else None
        if t["accuracy"]:
            record["accuracy_share_of_teacher"] = s["accuracy"] / t["accuracy"]
    record["checkpoints"] = str(checkpoints)
    return folder, record
