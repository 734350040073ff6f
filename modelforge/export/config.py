"""The typed settings of the export package: `ExportConfig` (Triton, Jetson, TensorRT) and `TfliteConfig`.

They live beside the engines that read them, not in passes/, so the engines and their tests need no pass; the
`export` and `tflite` passes use them as their Config (the recipe's `passes[].config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelforge.export.targets import describe_targets


class _Settings(BaseModel):
    """As every pass Config: typed, documented fields; unknown keys, NaN and infinity are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ExportConfig(_Settings):
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


class TfliteConfig(_Settings):
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
