"""Knowledge distillation between Keras models (teacher -> student), for the `distill` pass to dispatch to.

Loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels, student),
Hinton et al.'s form, with the recipe fields of PyTorch distillation (temperature, alpha, and train.epochs,
train.lr, train.batch_size, seed: `KerasDistillConfig.from_pass_config`). One GradientTape loop works for
Keras 3 and tf_keras models alike (both run on TensorFlow); both models must output logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError
from modelforge.tensorflow.runtime import import_tf, quiet


@dataclass(frozen=True)
class KerasDistillConfig:
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 10
    learning_rate: float = 3e-3
    batch_size: int = 64
    seed: int = 0

    @classmethod
    def from_pass_config(cls, config: Any, seed: int) -> KerasDistillConfig:
        """From the `distill` pass's Config (temperature, alpha, train.epochs / lr / batch_size) and the seed."""
        train = config.train
        return cls(config.temperature, config.alpha, train.epochs, train.lr, train.batch_size, seed)


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
) -> dict[str, Any]:
    """Train `student` (in place) to match `teacher`; saves it to `out` when given; returns the stage record."""
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

    @tf.function
    def step(xb, yb):
        soft = tf.nn.softmax(teacher(xb, training=False) / temperature)
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
    for epoch in range(config.epochs):
        order = rng.permutation(len(x))
        losses = [
            float(step(tf.constant(x[idx]), tf.constant(y[idx])))
            for idx in (order[i : i + config.batch_size] for i in range(0, len(x), config.batch_size))
        ]
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        accuracy = _accuracy(student, x_eval, y_eval)
        if accuracy is not None:
            row["eval_accuracy"] = accuracy
        history.append(row)
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
