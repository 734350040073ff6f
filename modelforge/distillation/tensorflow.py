"""Knowledge distillation between Keras models (teacher -> student), for the `distill` pass to dispatch to.

Loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels, student),
Hinton et al.'s form, with the recipe fields of PyTorch distillation (temperature, alpha, and train.epochs,
train.lr, train.batch_size, seed: `KerasDistillConfig.from_pass_config`). One GradientTape loop works for
Keras 3 and tf_keras models alike (both run on TensorFlow); both models must output logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelforge.errors import InputError
from modelforge.model.tensorflow.runtime import import_tf, quiet
from modelforge.progress import Progress

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.distillation.config import DistillConfig, DistillResult


@dataclass(frozen=True)
class KerasDistillConfig:
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 10
    learning_rate: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    cache_teacher: bool = False

    @classmethod
    def from_pass_config(cls, config: Any, seed: int) -> KerasDistillConfig:
        """From the `distill` pass's Config (temperature, alpha, cache_teacher, train.epochs / lr / batch_size)
        and the seed."""
        train = config.train
        return cls(
            config.temperature, config.alpha, train.epochs, train.lr, train.batch_size, seed, config.cache_teacher
        )


def _keras_of(model: Any) -> Any:
    """tf_keras for a Keras 2 model, keras for a Keras 3 one: optimizers must match the model's variables."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def _accuracy(model, x: np.ndarray | None, y: np.ndarray | None) -> float | None:
    if x is None or y is None:
        return None
    logits = np.concatenate([np.asarray(model(x[i : i + 256], training=False)) for i in range(0, len(x), 256)])
    return float((logits.argmax(1) == y).mean())


def distill_keras(
    teacher: Any,
    student: Any,
    train: tuple[np.ndarray, np.ndarray],
    config: KerasDistillConfig,
    evaluation: tuple[np.ndarray, np.ndarray] | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
    description: str = "distill (Keras)",
) -> dict[str, Any]:
    """Train `student` (in place) to match `teacher`; saves it to `out` when given; returns the stage record.
    `progress`: a bar per epoch (one step per batch) and a line per epoch, as the PyTorch training loop shows."""
    progress = progress or Progress()
    tf = import_tf("distilling a Keras model")
    tf.random.set_seed(config.seed)
    x, y = train
    if teacher.outputs[0].shape[-1] != student.outputs[0].shape[-1]:
        raise InputError(
            f"teacher has {teacher.outputs[0].shape[-1]} outputs, student {student.outputs[0].shape[-1]}: "
            "distillation needs the same classes"
        )
    optimizer = _keras_of(student).optimizers.Adam(config.learning_rate)  # the student's own Keras
    temperature = float(config.temperature)

    teacher_logits = tf.function(lambda xb: teacher(xb, training=False))
    # No augmentation here: the teacher's logits per sample never change, so they can be computed once.
    cached = (
        np.concatenate([np.asarray(teacher_logits(tf.constant(x[i : i + 256]))) for i in range(0, len(x), 256)])
        if config.cache_teacher
        else None
    )

    @tf.function
    def step(xb, yb, tb):
        soft = tf.nn.softmax(tb / temperature)
        with tf.GradientTape() as tape:
            logits = student(xb, training=True)
            log_student = tf.nn.log_softmax(logits / temperature)
            kl = tf.reduce_mean(tf.reduce_sum(soft * (tf.math.log(soft + 1e-12) - log_student), axis=-1))
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits))
            loss = config.alpha * temperature**2 * kl + (1 - config.alpha) * ce
        grads = tape.gradient(loss, student.trainable_variables)
        optimizer.apply_gradients(zip(grads, student.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(config.seed)
    x_eval, y_eval = evaluation if evaluation is not None else (None, None)
    history = []
    record: dict[str, Any] = {
        "teacher_accuracy": _accuracy(teacher, x_eval, y_eval),
        "student_accuracy_before": _accuracy(student, x_eval, y_eval),
    }
    batches = -(-len(x) // config.batch_size)
    for epoch in range(config.epochs):
        order = rng.permutation(len(x))
        losses = []
        progress.start(f"{description} epoch {epoch + 1}/{config.epochs}", batches)
        try:
            for idx in (order[i : i + config.batch_size] for i in range(0, len(x), config.batch_size)):
                xb = tf.constant(x[idx])
                tb = tf.constant(cached[idx]) if cached is not None else teacher_logits(xb)
                losses.append(float(step(xb, tf.constant(y[idx]), tb)))
                progress.advance(1)
        finally:
            progress.stop()
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        accuracy = _accuracy(student, x_eval, y_eval)
        if accuracy is not None:
            row["eval_accuracy"] = accuracy
        history.append(row)
        progress.log(
            f"{description} epoch {epoch + 1}: loss {row['loss']:.4f}"
            + (f", eval accuracy {accuracy:.4f}" if accuracy is not None else "")
        )
    record.update(
        temperature=temperature,
        alpha=config.alpha,
        epochs=config.epochs,
        student_accuracy_after=_accuracy(student, x_eval, y_eval),
        teacher_params=int(teacher.count_params()),
        student_params=int(student.count_params()),
        training_curve=history,
    )
    if out is not None:
        with quiet():
            student.save(str(out))
    return record


# ---------------------------------------------------------------------------------------------------------------
# The `distill` pass on a Keras teacher: checks before any work, the run, and the stage record (the keys of
# PyTorch distillation's record, modelforge.distillation.run, that apply, so the report renders both the same way).

KERAS_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")


def check_keras_distill(teacher: Path, teacher_format: str, config: dict[str, Any]) -> None:
    """What a Keras distillation cannot do, refused from the recipe and the files' bytes (no TensorFlow import)."""
    from modelforge.model.loader import detect_format

    student = config.get("student")
    student_format = detect_format(Path(student)) if student else None
    keras_teacher = teacher_format in ("keras", "savedmodel")
    if not keras_teacher:
        if student_format in ("keras", "savedmodel"):
            raise InputError(
                f"the student {student} is a Keras model ({student_format}) but the teacher {teacher} is "
                f"{teacher_format}: give a .pt2 student for a PyTorch teacher, or a Keras teacher (.keras/.h5)"
            )
        return
    if teacher_format == "savedmodel":
        raise InputError(
            f"teacher {teacher}: Keras distillation needs a Keras model file (.keras or .h5), not a SavedModel"
        )
    for option, wrong in (
        ("student_factory", config.get("student_factory") is not None),
        ("student_from_teacher", config.get("student_from_teacher") is not None),
        ("hints", bool(config.get("hints"))),
        ("resume", bool(config.get("resume"))),
        (f"loss {config.get('loss')}", config.get("loss", "kl") != "kl"),
    ):
        if wrong:
            raise InputError(
                f"{option} is for PyTorch distillation; a Keras teacher is distilled with loss kl into a Keras "
                "student file (--student FILE.keras or .h5)"
            )
    if student_format != "keras":
        raise InputError(
            f"the teacher {teacher} is a Keras model (keras) but the student {student} is {student_format}: "
            "give the student as a Keras file (.keras or .h5) too"
        )


def _data_arrays(data) -> tuple[np.ndarray, np.ndarray | None]:
    """All samples of a (small, bound) data set in memory: single-input models."""
    batches = list(data.batches(1024))
    if len(batches[0]) != 1:
        raise InputError("Keras distillation supports single-input models")
    return np.concatenate([next(iter(b.values())) for b in batches]), data.labels()


def _shape(tensor: Any) -> str:
    return "[" + ", ".join("N" if i == 0 else str(d) for i, d in enumerate(tensor.shape)) + "]"


def _top1(model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(model(x[i : i + 256], training=False)).argmax(1) for i in range(0, len(x), 256)])


def _measure(model, x, y, teacher_top1) -> dict[str, Any]:
    top1 = _top1(model, x)
    params = int(model.count_params())
    return {
        "params": params,
        "macs": None,
        "weights_bytes": int(sum(np.asarray(w).nbytes for w in model.get_weights())),
        "accuracy": float((top1 == y).mean()) if y is not None else None,
        "agreement_with_teacher": float((top1 == teacher_top1).mean()),
    }


def run_keras_distillation(
    artifact: Any,
    config: DistillConfig,
    *,
    train: BoundDataset | None,
    evaluation: BoundDataset | None,
    seed: int,
    workdir: Path,
    progress: Progress,
) -> DistillResult:
    """Distil the Keras teacher into the configured Keras student (and, with `baseline`, train the same student
    from the same initial weights on labels alone); the student is written to `workdir`, the result names its
    Keras (no checkpoints: a Keras run starts over)."""
    import time

    from modelforge.distillation.config import BASELINE_AUTO_LIMIT, DistillResult
    from modelforge.model.tensorflow.loading import load_keras_model

    check_keras_distill(artifact.path, artifact.format, config.model_dump())
    teacher, _ = load_keras_model(artifact.path, artifact.keras_flavor)
    student_path = Path(config.student)
    student, kind = load_keras_model(student_path)
    t_out, s_out = teacher.outputs[0], student.outputs[0]
    if tuple(t_out.shape[1:]) != tuple(s_out.shape[1:]):
        raise InputError(
            f"teacher output shape {_shape(t_out)} and student output shape {_shape(s_out)} differ; the student "
            "must produce the teacher's output shape"
        )
    if len(t_out.shape) != 2:
        raise InputError(f"loss kl needs class scores [batch, classes]; the teacher's output is {_shape(t_out)}")
    t_in, s_in = teacher.inputs[0], student.inputs[0]
    if tuple(t_in.shape[1:]) != tuple(s_in.shape[1:]):
        raise InputError(f"teacher input shape {_shape(t_in)} and student input shape {_shape(s_in)} differ")
    if train is None:
        raise InputError("distillation needs training data", hint="pass --train-data DATA")
    x, y = _data_arrays(train)
    if y is None:
        raise InputError(f"training data {train.dataset.path} has no labels")
    y = y.astype(np.int64)
    x_eval, y_eval = _data_arrays(evaluation) if evaluation is not None else (None, None)
    keras_config = KerasDistillConfig.from_pass_config(config, seed)
    labelled_eval = (x_eval, y_eval) if x_eval is not None and y_eval is not None else None

    out = workdir / f"model{student_path.suffix.lower() if kind == 'tf_keras' else '.keras'}"
    started = time.perf_counter()
    distilled = distill_keras(teacher, student, (x, y), keras_config, labelled_eval, out, progress)
    seconds_distill = time.perf_counter() - started

    samples = len(y)
    baseline_on = (
        config.baseline if config.baseline is not None else samples * keras_config.epochs <= BASELINE_AUTO_LIMIT
    )
    baseline_model, baseline_record, seconds_baseline = None, None, None
    if baseline_on:
        baseline_model, _ = load_keras_model(student_path, kind)  # the file's weights: where the student started
        label_only = KerasDistillConfig(**{**keras_config.__dict__, "alpha": 0.0, "cache_teacher": True})
        started = time.perf_counter()
        baseline_record = distill_keras(
            teacher,
            baseline_model,
            (x, y),
            label_only,
            labelled_eval,
            progress=progress,
            description="label-only baseline (Keras)",
        )
        seconds_baseline = time.perf_counter() - started

    cache = (
        {"note": f"teacher logits computed once for {samples} samples, reused for {keras_config.epochs} epochs"}
        if keras_config.cache_teacher
        else {"reason": "cache_teacher is off"}
    )
    record: dict[str, Any] = {
        "framework": "tensorflow (Keras, GradientTape)",
        "loss": "kl",
        "temperature": config.temperature,
        "alpha": config.alpha,
        "hints": [],
        "student_source": f"Keras file {student_path} ({kind})",
        "output_shape": [None, *(int(d) for d in t_out.shape[1:])],
        "train_samples": samples,
        "teacher_cache": cache,
        "distributed": {"world_size": 1},
        "seconds_distill": round(seconds_distill, 3),
        "seconds_baseline": round(seconds_baseline, 3) if seconds_baseline is not None else None,
        "best_epoch": None,
        "stopped_early": False,
        "resumed_from_epoch": None,
        "training_curve": distilled["training_curve"],
        "baseline_training_curve": baseline_record["training_curve"] if baseline_record else None,
        "baseline": "label-only student, same budget" if baseline_on else "off",
        "train_settings_used": ["epochs", "batch_size", "lr (Adam, constant)"],
        "train_settings_ignored": _keras_ignored(config.train),
    }
    if x_eval is not None:
        teacher_top1 = _top1(teacher, x_eval)
        models = {"teacher": teacher, "student": student}
        if baseline_model is not None:
            models["baseline"] = baseline_model
        record["models"] = {name: _measure(m, x_eval, y_eval, teacher_top1) for name, m in models.items()}
        t, s = record["models"]["teacher"], record["models"]["student"]
        record["params_ratio"] = s["params"] / t["params"] if t["params"] else None
        record["macs_ratio"] = None
        if t["accuracy"]:
            record["accuracy_share_of_teacher"] = s["accuracy"] / t["accuracy"]
        if baseline_model is not None and s["accuracy"] is not None:
            record["gain_over_baseline_pp"] = 100 * (s["accuracy"] - record["models"]["baseline"]["accuracy"])
    else:
        record["params_ratio"] = distilled["student_params"] / distilled["teacher_params"]
    record["program_bytes_student"] = out.stat().st_size
    return DistillResult(out, record, keras_flavor=kind)


def _keras_ignored(train: Any) -> list[str]:
    """TrainConfig fields the Keras loop does not apply (set away from their defaults), for the record."""
    defaults = type(train)()
    fields = ("weight_decay", "early_stopping", "keep_best", "hflip", "crop_padding", "device")
    ignored = [name for name in fields if getattr(train, name, None) != getattr(defaults, name, None)]
    return (
        [f"optimizer {train.optimizer}"] * (train.optimizer != "adam")
        + [f"schedule {train.schedule}"] * (train.schedule != "constant")
        + ignored
    )
