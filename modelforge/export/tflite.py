"""TensorFlow / Keras to .tflite (LiteRT flatbuffers): full-integer INT8 (int8), float16
weights (fp16), dynamic-range (dynamic), float32 (fp32).

Full-integer INT8 calibrates activation ranges on a representative dataset drawn from the calibration data,
one sample at a time, and can make the model's own input and output int8 or uint8 (for integer-only
accelerators and microcontrollers) or keep them float32. The float32 flatbuffer is converted too, so the
report can say how much smaller the quantized one is than the float .tflite, not only than the ONNX form.
`export_tflite` is the `tflite` pass's engine: the model and an ExportJob in, model.tflite and its figures out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError, PassError
from modelforge.export.config import TfliteConfig
from modelforge.export.job import ExportJob, ExportResult, Record
from modelforge.model.artifact import ModelArtifact
from modelforge.model.tensorflow.loading import TfModel, load_tf_model
from modelforge.model.tensorflow.runtime import import_tf, quiet_native

# Named as RuntimeInfo names precisions (fp32, fp16, int8), plus dynamic: int8 weights, float activations.
PRECISIONS = ("int8", "fp16", "dynamic", "fp32")


def representative_samples(batches: Iterator[dict[str, np.ndarray]], tf_model: TfModel, limit: int) -> list[list]:
    """Up to `limit` single samples, each a list of arrays in the model's input order."""
    samples: list[list] = []
    for feeds in batches:
        values = list(feeds.values())
        arrays = [feeds.get(t.name, values[0]) for t in tf_model.inputs]
        for i in range(len(arrays[0])):
            samples.append(
                [np.asarray(a[i : i + 1], dtype=t.dtype) for a, t in zip(arrays, tf_model.inputs, strict=True)]
            )
            if len(samples) >= limit:
                return samples
    return samples


def _converter(tf, tf_model: TfModel, source: Path) -> Any:
    if tf_model.kind == "savedmodel":  # its own signature keeps the input/output names
        return tf.lite.TFLiteConverter.from_saved_model(str(source))
    return tf.lite.TFLiteConverter.from_keras_model(tf_model.model)


def convert_tflite(
    tf_model: TfModel,
    source: Path,
    precision: str,
    io_type: str = "float32",
    representative: list[list] | None = None,
) -> bytes:
    """The .tflite flatbuffer; `representative` (single samples) is required for `int8`."""
    tf = import_tf("converting to TFLite")
    converter = _converter(tf, tf_model, source)
    if precision in ("int8", "fp16", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        if not representative:
            raise InputError("full-integer INT8 .tflite needs calibration samples", hint="pass --calibration DATA")
        samples = representative
        dataset: Callable[[], Iterator[list]] = lambda: iter(samples)  # noqa: E731
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io_type]
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
    try:
        with quiet_native():
            return converter.convert()
    except Exception as exc:  # the MLIR converter raises ConverterError with the op that failed
        text = str(exc).strip()
        first = next(
            (line for line in text.splitlines() if "error" in line.lower()), text.splitlines()[0] if text else ""
        )
        raise PassError(
            "tflite", f"TFLite conversion ({precision}) failed: {first[:300] or type(exc).__name__}"
        ) from exc


def export_tflite(artifact: ModelArtifact, config: TfliteConfig, job: ExportJob) -> ExportResult:
    """Convert a Keras model or SavedModel to job.workdir/model.tflite (int8 calibrates on job.calibration)."""
    record: Record = {}
    tf_model = load_tf_model(artifact)
    samples = None
    if config.precision == "int8":
        if job.calibration is None:
            raise InputError("tflite precision int8 needs calibration data", hint="pass --calibration DATA")
        samples = representative_samples(job.calibration.batches(64), tf_model, config.calibration_samples)
        record["calibration_samples"] = len(samples)
    with job.task(f"TFLite {config.precision}"):
        flatbuffer = convert_tflite(tf_model, artifact.path, config.precision, config.io_type, samples)
    path = job.workdir / "model.tflite"
    path.write_bytes(flatbuffer)
    # The report's latency and accuracy of this result are LiteRT's; the baseline's are onnxruntime's.
    record["runtime"] = "LiteRT (ai-edge-litert, XNNPACK); baseline: its ONNX form on onnxruntime"
    record["precision"] = config.precision
    record["io_type"] = config.io_type
    record["size_bytes"] = len(flatbuffer)
    if config.compare_float and config.precision != "fp32":
        float_size = len(convert_tflite(tf_model, artifact.path, "fp32"))
        record["size_bytes_float_tflite"] = float_size
        record["size_ratio_vs_float_tflite"] = float_size / len(flatbuffer)
    return ExportResult(ModelArtifact(path=path, format="tflite", io=artifact.io), record)
