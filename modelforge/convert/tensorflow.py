"""TensorFlow to ONNX with tf2onnx, checked numerically: the ONNX form must compute what the TF model does.

tf2onnx converts with `continue_on_error`: an op it cannot map is left behind or approximated, and the
result can load and run yet compute something else. So every conversion runs both models on real samples
(calibration data, else eval or training data) through `modelforge.convert.check` (max absolute difference,
cosine; beyond tolerance exit 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelforge.convert.check import CHECK_SAMPLES, check_agreement
from modelforge.errors import PassError, first_line
from modelforge.model.artifact import ModelArtifact
from modelforge.model.tensorflow.loading import TfModel, load_tf_model
from modelforge.model.tensorflow.runtime import import_tf, quiet_native
from modelforge.optional import require


def check_samples(tf_model: TfModel, examples: dict[str, np.ndarray] | None, seed: int = 0) -> tuple[dict, str]:
    """Up to CHECK_SAMPLES samples per input: the given data, or seeded normal noise when there is none."""
    arrays = {k: v for k, v in (examples or {}).items() if k != "labels"}
    if arrays and (len(tf_model.inputs) == 1 or all(t.name in arrays for t in tf_model.inputs)):
        first = next(iter(arrays.values()))
        feeds = {t.name: np.asarray(arrays.get(t.name, first), dtype=t.dtype)[:CHECK_SAMPLES] for t in tf_model.inputs}
        return feeds, "data"
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in tf_model.inputs:
        shape = [
            8 if i == 0 and not isinstance(d, int) else (d if isinstance(d, int) else 1) for i, d in enumerate(t.shape)
        ]
        feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
    return feeds, "random normal samples (no data given)"


def check_conversion(tf_model: TfModel, onnx_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Run the TF model and its ONNX form on the same samples; a disagreement beyond tolerance is a PassError."""
    from modelforge.runtimes.onnxruntime import create_session

    reference = tf_model.predict(feeds)
    session = create_session(onnx_path, threads=1, stage="convert")
    names = [i.name for i in session.get_inputs()]
    onnx_feeds = {name: feeds[t.name] for name, t in zip(names, tf_model.inputs, strict=True)}
    by_name = dict(zip([o.name for o in session.get_outputs()], session.run(None, onnx_feeds), strict=True))
    converted = [
        by_name[name] if name in by_name else list(by_name.values())[i] for i, name in enumerate(tf_model.output_names)
    ]
    hint = "an op tf2onnx cannot convert faithfully; rerun with MODELFORGE_DEBUG=1, or export to ONNX yourself"
    return check_agreement(reference, converted, "TensorFlow", hint)


def tf_to_onnx(
    artifact: ModelArtifact, workdir: Path, opset: int, examples: dict[str, np.ndarray] | None = None
) -> tuple[ModelArtifact, dict[str, Any]]:
    """Convert a `keras`/`savedmodel` artifact to `workdir/model.onnx` and check it on samples."""
    import_tf("converting a TensorFlow model to ONNX")  # first, quietly: tf2onnx imports it
    with quiet_native():
        tf2onnx = require("tf2onnx", "converting a TensorFlow model to ONNX")
    from modelforge.model.onnx_model import onnx_artifact, save_onnx

    tf_model = load_tf_model(artifact)
    target = workdir / "model.onnx"
    try:
        with quiet_native():  # grappler logs from C++
            proto, _ = tf2onnx.convert.from_function(
                tf_model.serve, input_signature=tf_model.input_signature(), opset=opset
            )
    except Exception as exc:  # tf2onnx raises whatever its handlers raise
        raise PassError("convert", f"tf2onnx failed: {first_line(exc)}") from exc
    save_onnx(proto, target)
    feeds, source = check_samples(tf_model, examples)
    check = check_conversion(tf_model, target, feeds)
    info = {
        "exporter": f"tf2onnx {tf2onnx.__version__} from {tf_model.kind}",
        "opset_requested": opset,
        "opset": opset,
        "check": check | {"samples": len(next(iter(feeds.values()))), "samples_from": source},
    }
    return onnx_artifact(target), info
