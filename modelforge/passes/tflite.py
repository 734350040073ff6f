"""`tflite`: a Keras model or SavedModel to a LiteRT flatbuffer (full-integer INT8, float16, dynamic-range).

The result is `model.tflite`, evaluated on LiteRT against the float baseline with the same evaluator as
every other result. This is the adapter: the config and the conversion live in modelforge.export (config.py,
tflite.py); `modelforge export --target tflite` is this pass as a one-pass recipe.
"""

from __future__ import annotations

from modelforge.export.config import TfliteConfig
from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassContext
from modelforge.passes.export import export_job


@register
class Tflite(Pass):
    name = "tflite"
    description = "Convert a Keras model or SavedModel to .tflite (full INT8, float16 or dynamic-range) for LiteRT."
    accepts = ("keras", "savedmodel")
    produces = "tflite"
    Config = TfliteConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        from modelforge.export.tflite import export_tflite

        result = export_tflite(artifact, self.config, export_job(ctx))
        for key, value in result.record.items():
            ctx.record(key, value)
        return result.artifact
