"""`tflite`: a Keras model or SavedModel to a LiteRT flatbuffer (full-integer INT8, float16, dynamic-range).

The result is `model.tflite`, evaluated on LiteRT against the float baseline with the same evaluator as
every other result. The conversion lives in modelforge.export.tflite; `modelforge export --target tflite`
is this pass as a one-pass recipe.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassConfig, PassContext


class TfliteConfig(PassConfig):
    precision: Literal["int8", "fp16", "dynamic", "fp32"] = Field(
        "int8",
        description="int8: full-integer (weights and activations, calibrated on the calibration data); fp16: "
        "float16 weights; dynamic: int8 weights, float activations; fp32: no quantization.",
    )
    io_type: Literal["float32", "int8", "uint8"] | None = Field(
        None,
        description="int8 only: the model's input/output type (int8/uint8 for integer-only devices; the evaluator "
        "quantizes float samples with the input's scale). Default: int8 for int8, float32 otherwise.",
    )
    calibration_samples: int = Field(200, gt=0, description="int8: calibration samples in the representative dataset.")
    compare_float: bool = Field(
        True, description="Also convert the float32 .tflite, to report the size ratio against it."
    )

    @model_validator(mode="after")
    def _io_type(self) -> TfliteConfig:
        if self.io_type is None:
            self.io_type = "int8" if self.precision == "int8" else "float32"
        elif self.io_type != "float32" and self.precision != "int8":
            raise ValueError(f"io_type {self.io_type} needs precision int8 (full-integer)")
        return self


@register
class Tflite(Pass):
    name = "tflite"
    description = "Convert a Keras model or SavedModel to .tflite (full INT8, float16 or dynamic-range) for LiteRT."
    accepts = ("keras", "savedmodel")
    produces = "tflite"
    Config = TfliteConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        from modelforge.errors import InputError
        from modelforge.export.tflite import convert_tflite, representative_samples
        from modelforge.model.tensorflow.loading import load_tf_model

        config = self.config
        tf_model = load_tf_model(artifact)
        samples = None
        if config.precision == "int8":
            if ctx.calibration is None:
                raise InputError("tflite precision int8 needs calibration data", hint="pass --calibration DATA")
            samples = representative_samples(ctx.calibration.batches(64), tf_model, config.calibration_samples)
            ctx.record("calibration_samples", len(samples))
        with ctx.task(f"TFLite {config.precision}"):
            flatbuffer = convert_tflite(tf_model, artifact.path, config.precision, config.io_type, samples)
        path = ctx.workdir / "model.tflite"
        path.write_bytes(flatbuffer)
        # The report's latency and accuracy of this result are LiteRT's; the baseline's are onnxruntime's.
        ctx.record("runtime", "LiteRT (ai-edge-litert, XNNPACK); baseline: its ONNX form on onnxruntime")
        ctx.record("precision", config.precision)
        ctx.record("io_type", config.io_type)
        ctx.record("size_bytes", len(flatbuffer))
        if config.compare_float and config.precision != "fp32":
            float_size = len(convert_tflite(tf_model, artifact.path, "fp32"))
            ctx.record("size_bytes_float_tflite", float_size)
            ctx.record("size_ratio_vs_float_tflite", float_size / len(flatbuffer))
        return ModelArtifact(path=path, format="tflite", io=artifact.io)
