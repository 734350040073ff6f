"""`quantize`: post-training INT8 (or 4-bit weight) quantization, with the scheme picked for the model family.

A thin adapter: the settings are `quantization.config.QuantizeConfig`, the work is `quantization.target.quantize`
(target dispatch, calibration and QDQ writing, the speed-aware search, the accuracy fallback). The pass hands
the flow its context's work folder, data, gate thresholds, latency settings and progress, and records what the
flow returns.
"""

from __future__ import annotations

from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassContext
from modelforge.quantization.config import QuantizeConfig


@register
class QuantizeInt8(Pass):
    name = "quantize"
    description = "Post-training quantization (INT8 static/dynamic or INT4 weights), scheme picked per model family"
    accepts = ("onnx",)
    produces = "onnx"
    needs_calibration = True
    Config = QuantizeConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        """Quantize for the target; the result is labelled with the runtime and precision it is served with."""
        from modelforge.quantization.fallback import Budget
        from modelforge.quantization.state import LatencySettings, QuantizeInputs
        from modelforge.quantization.target import quantize

        inputs = QuantizeInputs(
            workdir=ctx.workdir,
            calibration=ctx.calibration,
            evaluation=ctx.evaluation,
            budget=Budget.from_gates(ctx.gates),  # the accuracy fallback aims at exactly what the run is judged by
            latency=LatencySettings(ctx.measure_latency, ctx.latency_batch_size, ctx.threads),
            progress=ctx.progress,
        )
        result = quantize(artifact, self.config, inputs, name=self.name)
        for key, value in result.record.items():
            ctx.record(key, value)
        return result.artifact
