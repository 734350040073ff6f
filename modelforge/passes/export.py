"""`export`: turn the model into what a server or a device runs: a Triton model repository, a Jetson bundle,
or a TensorRT engine; every export also ships baseline_stats.json for drift monitoring.

Export is the last pass of a chain (`quantize` then `export` in one recipe, one report). It hands the model on
unchanged (the evaluation compares it with the original as usual) and leaves the target's files beside it in
the output folder. This is the adapter: the config and the engine live in modelforge.export (config.py, run.py).
"""

from __future__ import annotations

from pathlib import Path

from modelforge.export.config import ExportConfig
from modelforge.export.job import ExportJob
from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassContext


def export_job(ctx: PassContext) -> ExportJob:
    """The run's side of an export, unpacked from the pass context."""
    return ExportJob(
        workdir=ctx.workdir,
        calibration=ctx.calibration,
        evaluation=ctx.evaluation,
        seed=ctx.seed,
        threads=ctx.threads,
        measure_latency=ctx.measure_latency,
        output_dir=ctx.output_dir,
        progress=ctx.progress,
    )


@register
class Export(Pass):
    name = "export"
    description = "Export to a Triton model repository, a Jetson bundle or a TensorRT engine (+ drift baseline)."
    accepts = ("onnx",)
    produces = "onnx"
    Config = ExportConfig
    runs_without_data = True  # a serving layout for an ONNX file: generated sweep inputs, no baseline
    cacheable = False  # its files live beside the model, outside what the stage cache stores

    @classmethod
    def extends_output(cls, config: ExportConfig, out: Path) -> bool:
        """Never: the output is the run's own; a Triton repository is named with `repository` and added to."""
        if config.target == "triton":
            from modelforge.export.triton import refuse_repository_as_output

            refuse_repository_as_output(out)
        return False

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        from modelforge.export.run import export_target

        if self.config.target == "triton" and ctx.output_dir is not None:  # --force does not ask extends_output
            from modelforge.export.triton import refuse_repository_as_output

            refuse_repository_as_output(ctx.output_dir)

        result = export_target(artifact, self.config, export_job(ctx))
        for key, value in result.record.items():
            ctx.record(key, value)
        return result.artifact
