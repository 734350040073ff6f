"""Load a Keras file (.keras/.h5, Keras 3 or Keras 2) or a SavedModel folder into one callable shape.

Whatever the format, a `TfModel` has named inputs (the signature: names, dtypes, NHWC shapes as saved), named
outputs, a `tf.function` (`serve`) that the ONNX and TFLite converters trace, and `predict` for the reference
outputs the conversion check compares with. Outputs are ordered by name, as tf2onnx orders a returned dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError, first_line
from modelforge.model.artifact import ModelArtifact, TensorSpec
from modelforge.model.tensorflow.formats import is_keras3
from modelforge.model.tensorflow.runtime import import_keras3, import_tf, import_tf_keras, quiet


@dataclass
class TfModel:
    kind: str  # keras3 | tf_keras | savedmodel
    model: Any  # the Keras model, or the loaded SavedModel object
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    serve: Any  # tf.function(*inputs) -> {output name: tensor}

    def input_signature(self) -> list[Any]:
        tf = import_tf("running a TensorFlow model")
        return [
            tf.TensorSpec([d if isinstance(d, int) else None for d in t.shape], t.dtype, name=t.name)
            for t in self.inputs
        ]

    def predict(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Reference outputs in `output_names` order; a single-input model takes its array under any key."""
        tf = import_tf("running a TensorFlow model")
        values = [feeds[t.name] if t.name in feeds else next(iter(feeds.values())) for t in self.inputs]
        result = self.serve(*[tf.constant(v, dtype=t.dtype) for v, t in zip(values, self.inputs, strict=True)])
        return [np.asarray(result[name]) for name in self.output_names]


def _clean(name: str, fallback: str) -> str:
    """A tensor name usable in ONNX and .npz keys: 'serving_default_x:0' style decorations removed."""
    name = re.sub(r"[^A-Za-z0-9_.]", "_", name.split(":")[0]).strip("_")
    return name or fallback


def _distinct(names: list[str], prefix: str) -> tuple[str, ...]:
    if len(set(names)) == len(names):
        return tuple(names)
    return tuple(f"{prefix}_{i}" for i in range(len(names)))


def _safe_mode(kind: str) -> Any:
    """Refuse Python lambdas (marshalled bytecode: arbitrary code) in every format. Keras 3 applies `safe_mode`
    to .keras and .h5 files; tf_keras ignores it for .h5, so its flag is set for the whole load."""
    import contextlib

    if kind == "keras3":
        return contextlib.nullcontext()
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(True)


def load_keras_model(path: Path, kind: str | None = None) -> tuple[Any, str]:
    """The Keras model in a .keras/.h5 file, with the Keras that saved it (or `kind`); never deserializes
    Lambda code from the file (safe mode on)."""
    kind = kind or ("keras3" if is_keras3(path) else "tf_keras")
    library = import_keras3("loading a Keras model") if kind == "keras3" else import_tf_keras("loading a Keras model")
    try:
        with quiet(), _safe_mode(kind):
            model = library.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError... for files it cannot read
        first = first_line(exc)
        raise InputError(
            f"model {path}: not a Keras model {'Keras 3' if kind == 'keras3' else 'tf_keras'} can load ({first[:200]})"
        ) from exc
    return model, kind


def _keras_tf_model(model: Any, kind: str, path: Path) -> TfModel:
    tf = import_tf("loading a Keras model")
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise InputError(
            f"model {path}: has no input signature (a subclassed model never called)",
            hint="build it with keras.Input(shape=...) before saving",
        )
    names = _distinct([_clean(getattr(t, "name", ""), f"input_{i}") for i, t in enumerate(inputs)], "input")
    specs = tuple(
        TensorSpec(
            name,
            np.dtype(tf.as_dtype(t.dtype).as_numpy_dtype).name,
            tuple(None if d is None else int(d) for d in t.shape),
        )
        for name, t in zip(names, inputs, strict=True)
    )
    raw_outputs = list(getattr(model, "output_names", None) or [])
    count = len(model.outputs)
    outputs = (
        _distinct([_clean(n, f"output_{i}") for i, n in enumerate(raw_outputs)], "output")
        if len(raw_outputs) == count
        else tuple(f"output_{i}" for i in range(count))
    )
    if set(outputs) & set(names):
        outputs = tuple(f"output_{i}" for i in range(count))
    signature = [
        tf.TensorSpec([d if isinstance(d, int) else None for d in t.shape], t.dtype, name=t.name) for t in specs
    ]

    @tf.function(input_signature=signature)
    def serve(*xs):
        result = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        result = result if isinstance(result, list | tuple) else [result]
        return dict(zip(outputs, result, strict=True))

    return TfModel(kind, model, specs, tuple(sorted(outputs)), serve)


def _savedmodel_tf_model(path: Path) -> TfModel:
    tf = import_tf("loading a SavedModel")
    try:
        with quiet():
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        first = first_line(exc)
        raise InputError(f"model {path}: not a readable SavedModel ({first[:200]})") from exc
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise InputError(
            f"model {path}: SavedModel has no 'serving_default' signature "
            f"(has: {', '.join(loaded.signatures) or 'none'})",
            hint="export it with tf.saved_model.save(model, dir, signatures=...) or keras model.export(dir)",
        )
    _, kwargs = signature.structured_input_signature
    names = sorted(kwargs)
    specs = tuple(
        TensorSpec(
            name,
            np.dtype(kwargs[name].dtype.as_numpy_dtype).name,
            tuple(None if d is None else int(d) for d in kwargs[name].shape),
        )
        for name in names
    )
    outputs = tuple(sorted(signature.structured_outputs))
    tf_specs = [tf.TensorSpec(kwargs[n].shape, kwargs[n].dtype, name=n) for n in names]

    @tf.function(input_signature=tf_specs)
    def serve(*xs):
        return signature(**dict(zip(names, xs, strict=True)))

    return TfModel("savedmodel", loaded, specs, outputs, serve)


def load_tf_model(artifact: ModelArtifact) -> TfModel:
    """Load a `keras` or `savedmodel` artifact (Keras 3 or tf_keras, as the file says)."""
    if artifact.format == "savedmodel":
        return _savedmodel_tf_model(artifact.path)
    model, kind = load_keras_model(artifact.path, artifact.keras_flavor)
    return _keras_tf_model(model, kind, artifact.path)


def tf_artifact(path: Path, fmt: str) -> ModelArtifact:
    """The artifact for a Keras file or SavedModel folder; IO comes from the ONNX form once converted."""
    if not path.exists():
        raise InputError(f"model {path} not found")
    flavor = ("keras3" if is_keras3(path) else "tf_keras") if fmt == "keras" else None
    return ModelArtifact(path=path, format=fmt, keras_flavor=flavor)
