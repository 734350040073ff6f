"""Magnitude (and 2:4) pruning of a Keras 2 model with TF-MOT: prune_low_magnitude on a PolynomialDecay
schedule during fine-tuning, then strip_pruning, so the saved model is a plain Keras model with zeros.

TF-MOT wraps layers of the Keras 2 API (`tf_keras`); a Keras 3 model cannot be wrapped, and gets a clear
message instead of TF-MOT's own AttributeErrors. The record has the keys of PyTorch pruning's record
(`modelforge.pruning.run`), so reports render both the same way; `prune_keras` returns the same `PruneResult`.
"""

from __future__ import annotations

import contextlib
import gzip
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelforge.errors import InputError
from modelforge.model.artifact import ModelArtifact
from modelforge.model.tensorflow.runtime import import_tf, quiet, quiet_native
from modelforge.optional import require
from modelforge.progress import Progress
from modelforge.pruning.run import PruneResult

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.pruning.config import PruneConfig

KERAS3_MESSAGE = (
    "TF-MOT pruning needs a Keras 2 (tf_keras) model; {path} was saved by Keras {version}, which TF-MOT cannot wrap"
)
KERAS3_HINT = "rebuild and save the model with tf_keras (import tf_keras as keras), or export it to ONNX/.pt2"


def check_keras_source(path: Path, fmt: str, method: str, resume: bool = False) -> None:
    """What TF-MOT cannot prune, refused from the file's bytes before any work (no TensorFlow import)."""
    from modelforge.model.tensorflow.formats import keras_version

    if fmt != "keras":
        raise InputError(
            f"model {path}: TF-MOT pruning needs a Keras 2 (tf_keras) model file (.h5 or .keras), not a SavedModel",
            hint=KERAS3_HINT,
        )
    version = keras_version(path)
    if version.startswith("3."):
        raise InputError(KERAS3_MESSAGE.format(path=path, version=version), hint=KERAS3_HINT)
    if method == "structured":
        raise InputError(
            "structured (channel) pruning is for PyTorch models; Keras models are pruned with TF-MOT",
            hint="use --method magnitude or --method 2:4",
        )
    if resume:
        raise InputError("resume applies to PyTorch pruning; a Keras run starts over (it takes seconds to minutes)")


def load_prunable(artifact: ModelArtifact, config: Any) -> Any:
    """The tf_keras model to prune; Keras 3 files, SavedModels and PyTorch-only settings get one clear line."""
    from modelforge.model.tensorflow.loading import load_keras_model

    check_keras_source(artifact.path, artifact.format, config.method, config.resume)
    model, _ = load_keras_model(artifact.path, "tf_keras")
    return model


def _tfmot():
    import_tf("pruning a Keras model")
    with quiet_native():
        return require("tensorflow_model_optimization", "pruning a Keras model")


def _arrays(data) -> tuple[np.ndarray, np.ndarray]:
    """All samples of a (small, bound) data set in memory: single-input models."""
    batches = list(data.batches(1024))
    if len(batches[0]) != 1:
        raise InputError("TF-MOT pruning here supports single-input Keras models")
    x = np.concatenate([next(iter(b.values())) for b in batches])
    return x, data.labels()


def _kernels(model) -> dict[str, np.ndarray]:
    """Weight kernels of Conv and Dense layers (what prune_low_magnitude prunes by default)."""
    return {
        layer.name: layer.get_weights()[0]
        for layer in model.layers
        if type(layer).__name__ in ("Conv2D", "Dense", "Conv1D", "DepthwiseConv2D", "Conv3D") and layer.get_weights()
    }


def _sizes(model) -> tuple[int, int]:
    blob = b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())
    return len(blob), len(gzip.compress(blob, 6))


def _accuracy(model, x, y) -> float | None:
    if x is None or y is None or len(y) == 0:
        return None
    return float((np.argmax(model.predict(x, verbose=0, batch_size=256), axis=1) == y).mean())


def _loss(tf_keras, model):
    softmax = getattr(model.layers[-1], "activation", None) is tf_keras.activations.softmax
    return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)


def _optimizer(tf_keras, train) -> Any:
    if train.optimizer == "sgd":
        return tf_keras.optimizers.SGD(train.lr, momentum=0.9, nesterov=True)
    if train.optimizer == "adamw":
        return tf_keras.optimizers.AdamW(train.lr, weight_decay=train.weight_decay)
    return tf_keras.optimizers.Adam(train.lr)


def prune_keras(
    artifact: ModelArtifact,
    config: PruneConfig,
    *,
    train: BoundDataset | None,
    evaluation: BoundDataset | None,
    seed: int,
    workdir: Path,
    progress: Progress,
) -> PruneResult:
    """Prune and fine-tune; the stripped model is written to `workdir`/model.h5 (no checkpoints: a Keras run
    starts over)."""
    model = load_prunable(artifact, config)
    tfmot = _tfmot()
    import tf_keras

    tf = import_tf("pruning a Keras model")
    tf.random.set_seed(seed)
    tf_keras.utils.set_random_seed(seed)
    x, y = _arrays(train)
    x_eval, y_eval = _arrays(evaluation) if evaluation is not None else (None, None)
    skip = set(config.skip_layers)
    kernels = [n for n in _kernels(model) if n not in skip]
    if not config.prune_first_conv and kernels:
        skip.add(kernels[0])
    if not config.prune_classifier and kernels:
        skip.add(kernels[-1])
    params_before = model.count_params()
    weights_before = _sizes(model)
    accuracy_before = _accuracy(model, x_eval, y_eval)

    epochs = max(1, config.train.epochs)  # TF-MOT prunes during training steps: at least one epoch
    steps_per_epoch = int(np.ceil(len(x) / config.train.batch_size))
    # Reach the target sparsity after ~2/3 of fine-tuning; the remaining epochs recover accuracy at it.
    end_step = max(1, int(steps_per_epoch * max(1, epochs * 2 // 3)))
    schedule = (
        tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=config.sparsity or 0.5, begin_step=0, end_step=end_step, frequency=1
        )
        if config.method == "magnitude"
        else None
    )

    prunable = set(_kernels(model)) - skip

    def wrap(layer):
        if layer.name in prunable:
            if config.method == "2:4":
                return tfmot.sparsity.keras.prune_low_magnitude(layer, sparsity_m_by_n=(2, 4))
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    with quiet():
        wrapped = tf_keras.models.clone_model(model, clone_function=wrap)
    _copy_weights(model, wrapped)
    wrapped.compile(optimizer=_optimizer(tf_keras, config.train), loss=_loss(tf_keras, model), metrics=["accuracy"])
    history: list[dict[str, Any]] = []

    stderr = sys.stderr  # the bar and the epoch lines go to the real stderr; quiet() mutes Keras's own output

    class Record(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan")))}
            if "val_accuracy" in logs:
                row["eval_accuracy"] = float(logs["val_accuracy"])
            history.append(row)
            with contextlib.redirect_stderr(stderr):
                progress.advance(1)
                progress.log(
                    f"TF-MOT prune + fine-tune epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f}"
                    + (f", eval accuracy {row['eval_accuracy']:.4f}" if "eval_accuracy" in row else "")
                )

    validation = (x_eval, y_eval) if x_eval is not None and y_eval is not None else None
    progress.start(f"TF-MOT prune + fine-tune ({epochs} epochs)", epochs)
    try:
        with quiet():
            wrapped.fit(
                x,
                y,
                batch_size=config.train.batch_size,
                epochs=epochs,
                verbose=0,
                shuffle=True,
                validation_data=validation,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), Record()],
            )
    finally:
        progress.stop()
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    path = workdir / "model.h5"
    with quiet():
        stripped.save(str(path), include_optimizer=False)
    rows = []
    for name, kernel in _kernels(stripped).items():
        if name in skip:
            continue
        zeros = int((kernel == 0).sum())
        rows.append({"layer": name, "weights": int(kernel.size), "zeros": zeros, "sparsity": zeros / kernel.size})
    total = sum(r["weights"] for r in rows)
    weights_after = _sizes(stripped)
    accuracy_after = _accuracy(stripped, x_eval, y_eval)
    record = {
        "framework": "tensorflow (TF-MOT prune_low_magnitude)",
        "method": config.method,
        "importance": "magnitude",
        "schedule": f"PolynomialDecay 0 -> {config.sparsity} over {end_step} steps" if schedule else "2:4 (m_by_n)",
        "scope": "layer (TF-MOT prunes each layer to the target)",
        "sparsity_target": config.sparsity,
        "accuracy_before_prune": accuracy_before,
        "accuracy_after_prune": None,  # TF-MOT prunes during fine-tuning: there is no pruned-only model
        "accuracy_after_finetune": accuracy_after,
        "params_before": params_before,
        "params_after": stripped.count_params(),
        "macs_before": None,
        "macs_after": None,
        "program_bytes_before": artifact.path.stat().st_size,
        "program_bytes_after": path.stat().st_size,
        "weights_bytes_before": weights_before[0],
        "weights_bytes_after": weights_after[0],
        "gzip_bytes_before": weights_before[1],
        "gzip_bytes_after": weights_after[1],
        "gzip_ratio": weights_after[1] / weights_before[1],
        "layers": rows,
        "skipped_layers": sorted(skip),
        "sparsity_measured": sum(r["zeros"] for r in rows) / total if total else 0.0,
        "note": "Zeros inside dense weight tensors: dense CPU kernels multiply them like any other value, so latency "
        "does not improve (see the measured speed-up); the gain is compressed size (gzip).",
        "training_curve": history,
        "steps": [],
        "train_settings_used": ["epochs", "batch_size", "optimizer", "lr", "weight_decay (adamw)"],
        "train_settings_ignored": _ignored_train_settings(config.train),
    }
    return PruneResult(path, record)


def _ignored_train_settings(train: Any) -> list[str]:
    """TrainConfig fields the Keras fine-tuning does not apply (set away from their defaults), for the record."""
    defaults = type(train)()
    fields = ("schedule", "early_stopping", "keep_best", "hflip", "crop_padding", "device")
    return [name for name in fields if getattr(train, name) != getattr(defaults, name)]


def _copy_weights(source, wrapped) -> None:
    """clone_model builds fresh weights: put the trained ones back (pruning wrappers hold the layer inside)."""
    for layer in wrapped.layers:
        inner = getattr(layer, "layer", layer)
        original = source.get_layer(inner.name)
        if original.get_weights():
            inner.set_weights(original.get_weights())
