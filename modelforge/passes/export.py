"""`export`: turn the model into what a server or a device runs: a Triton model repository, a Jetson bundle,
or a TensorRT engine; every export also ships baseline_stats.json for drift monitoring.

Export is the last pass of a chain (`quantize` then `export` in one recipe, one report). It hands the model on
unchanged (the evaluation compares it with the original as usual) and leaves the target's files beside it in
the output folder. The machinery lives in modelforge.export and modelforge.monitoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelforge.export.targets import describe_targets
from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassConfig, PassContext


class ExportConfig(PassConfig):
    target: Literal["triton", "jetson", "tensorrt"] = Field(description=describe_targets())
    name: str = Field("model", description="Model name (the Triton model folder; the bundle's title).")
    precision: Literal["auto", "fp32", "fp16", "int8"] = Field(
        "auto",
        description="TensorRT precision: auto = int8 for a Q/DQ model, fp16 otherwise (triton: the optional "
        "TensorRT accelerator's precision when tensorrt_accelerator is set).",
    )
    jetpack: str = Field("6.1", description="jetson: JetPack release of the device (sets the TensorRT version).")
    dims: dict[str, int] = Field(default_factory=dict, description="Sizes of dynamic axes other than the batch.")
    min_batch: int = Field(1, gt=0, description="TensorRT profile: smallest batch.")
    opt_batch: int = Field(8, gt=0, description="TensorRT profile: the batch TensorRT tunes for.")
    max_batch: int = Field(32, gt=0, description="TensorRT profile: largest batch.")
    workspace_mib: int = Field(1024, gt=0, description="TensorRT builder workspace limit (MiB).")
    dla_core: int | None = Field(None, ge=0, description="jetson: build for this DLA core (GPU fallback on).")
    sparse_weights: bool = Field(False, description="TensorRT sparse weights (after 2:4 pruning).")
    implicit_int8: bool = Field(
        False, description="tensorrt: calibrate a float model with TensorRT's entropy calibrator (no Q/DQ)."
    )
    timing_cache: Path | None = Field(None, description="tensorrt: timing cache file read and updated.")
    batch_sizes: list[int] = Field(
        [1, 2, 4, 8, 16, 32], description="triton: batch sizes measured (latency, throughput, peak memory)."
    )
    memory_budget: float | None = Field(
        None, gt=0, description="triton: max_batch_size is the largest measured batch whose peak memory fits (MiB)."
    )
    instance_kind: Literal["cpu", "gpu"] = Field("cpu", description="triton: instance_group kind.")
    instances: int = Field(1, gt=0, description="triton: model instances (instance_group count).")
    warmup: bool = Field(True, description="triton: warm-up requests made of a real calibration sample.")
    labels: Path | None = Field(None, description="triton: class names, one a line (the first output's labels).")
    tensorrt_accelerator: bool = Field(
        False, description="triton: run the ONNX model through ONNX Runtime's TensorRT accelerator (GPU)."
    )
    baseline_stats: bool = Field(
        True, description="Write baseline_stats.json for `modelforge drift` (triton: in the model's folder)."
    )
    repository: Path | None = Field(
        None,
        description="triton: the model repository the model is added to (next version of `name`); default: a "
        "new one, model_repository/ in the run's output. Reports never go into it.",
    )
    replace_config: bool = Field(
        False,
        description="triton: accept a new version whose inputs/outputs differ from the model's config.pbtxt (the "
        "older versions no longer load under the new config; the old one is kept in the output's replaced/).",
    )

    @field_validator("batch_sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(s <= 0 for s in sizes):
            raise ValueError(f"batch sizes must be positive, got {sizes}")
        return sorted(set(sizes))

    @model_validator(mode="after")
    def _profile(self) -> ExportConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError("need min_batch <= opt_batch <= max_batch")
        from modelforge.export.triton import check_model_name
        from modelforge.export.trt_ops import tensorrt_version_for

        try:
            check_model_name(self.name)
            tensorrt_version_for(self.jetpack)
        except Exception as exc:
            raise ValueError(getattr(exc, "message", str(exc))) from None
        return self


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

        return export_target(artifact, self.config, ctx)
