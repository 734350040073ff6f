"""Keras CNNs trained here on scikit-learn's digits (NHWC 8x8x1) for the TensorFlow tests and benchmark.

The model is trained once with Keras 2 (`tf_keras`, what TF-MOT prunes) and copied weight for weight into
the same architecture in Keras 3, so both loaders and the Keras-3-only pruning message are tested on one
trained network. Training takes a few seconds on two cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits_nhwc(seed: int = 0):
    """(x_train, y_train), (x_calib, y_calib), (x_test, y_test): NHWC float32 8x8x1 images in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    return (x[:1200], y[:1200]), (x[1200:1500], y[1200:1500]), (x[1500:], y[1500:])


def _layers(keras, width: int = 16):
    return [
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(64, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="logits"),
    ]


def build(library: str, width: int = 16):
    """The digits CNN in `tf_keras` (Keras 2) or `keras` (Keras 3), untrained."""
    import tensorflow  # noqa: F401  (initialises TF before either Keras)

    if library == "tf_keras":
        import tf_keras as keras
    else:
        import keras
    return keras.Sequential(_layers(keras, width), name="digits_cnn")


def train_tf_keras(epochs: int = 12, width: int = 16, seed: int = 0, log=None):
    """A trained tf_keras digits CNN (logits out), ~97% on the held-out split; `log`: called with a line per
    epoch (the example script prints them)."""
    import tensorflow as tf
    import tf_keras

    tf.random.set_seed(seed)
    tf_keras.utils.set_random_seed(seed)
    (x, y), _, _ = digits_nhwc()
    model = build("tf_keras", width)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(3e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = []
    if log is not None:

        class EpochLine(tf_keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                log(f"epoch {epoch + 1}/{epochs}: loss {(logs or {}).get('loss', float('nan')):.4f}")

        callbacks.append(EpochLine())
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, shuffle=True, callbacks=callbacks)
    return model


def as_keras3(model):
    """The same trained network in Keras 3 (weights copied layer for layer)."""
    copy = build("keras", model.get_layer("conv1").filters)
    copy.set_weights(model.get_weights())
    return copy


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float((np.argmax(model.predict(x, verbose=0), axis=1) == y).mean())


def write_data(folder: Path) -> dict[str, Path]:
    """train.npz, calib.npz, eval.npz (key `image`, labels), as the CLI reads them."""
    (xt, yt), (xc, yc), (xe, ye) = digits_nhwc()
    paths = {}
    for name, x, y in (("train", xt, yt), ("calib", xc, yc), ("eval", xe, ye)):
        paths[name] = folder / f"{name}.npz"
        np.savez(paths[name], image=x, labels=y)
    return paths
