"""The one interface every runtime implements: open a model file, run a batch, say what it is.

The evaluator, latency profile, bench and `--target auto` talk to runtimes only through `Backend`, so any two
can be compared side by side (the baseline on the runtime a user serves today, the result on its target).
Implementations live one per module (`onnxruntime.py`, `openvino.py`, `tensorrt.py`, `tflite.py`) and are
imported lazily through `RUNTIMES`: a runtime whose package is not installed costs nothing until asked for,
and then fails with a one-line `MissingExtraError` naming the pip command.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelforge.errors import InputError


@dataclass(frozen=True)
class RuntimeInfo:
    """What a figure was measured on; recorded beside every latency in reports and benchmarks."""

    runtime: str  # onnxruntime | openvino | tensorrt | tflite
    version: str
    device: str  # "CPU", "GPU:0", ...
    precision: str  # fp32 | fp16 | bf16 | int8 (what the runtime was asked to execute in)
    threads: int | None
    config: dict[str, str] = field(default_factory=dict)  # runtime-specific settings that change speed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Backend(Protocol):
    """A loaded model, ready to run batches. Outputs come back in the model's output order."""

    info: RuntimeInfo
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


# name -> "module:Class"; each class has `open(path, *, precision, threads, stage) -> Backend` as a classmethod.
RUNTIMES: dict[str, str] = {
    "onnxruntime": "modelforge.runtimes.onnxruntime:OnnxRuntimeBackend",
    "openvino": "modelforge.runtimes.openvino:OpenVinoBackend",
    "tensorrt": "modelforge.runtimes.tensorrt:TensorRtBackend",
    "tflite": "modelforge.runtimes.tflite:TfliteBackend",
}

# A model file's suffix names the runtime that reads it when none is asked for.
RUNTIME_BY_SUFFIX = {
    ".onnx": "onnxruntime",
    ".xml": "openvino",
    ".plan": "tensorrt",
    ".engine": "tensorrt",
    ".tflite": "tflite",
}


def runtime_for(path: Path) -> str:
    runtime = RUNTIME_BY_SUFFIX.get(Path(path).suffix.lower())
    if runtime is None:
        raise InputError(
            f"{path}: no runtime reads '{Path(path).suffix}' files; expected one of {', '.join(RUNTIME_BY_SUFFIX)}"
        )
    return runtime


def backend_class(runtime: str) -> Any:
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime '{runtime}'; expected one of {', '.join(RUNTIMES)}")
    module_name, class_name = RUNTIMES[runtime].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_backend(
    model: Path | bytes,
    *,
    runtime: str | None = None,
    precision: str = "fp32",
    threads: int | None = None,
    stage: str = "evaluate",
) -> Backend:
    """Load `model` on `runtime` (by default the one its file suffix names)."""
    if runtime is None:
        runtime = "onnxruntime" if isinstance(model, bytes) else runtime_for(Path(model))
    return backend_class(runtime).open(model, precision=precision, threads=threads, stage=stage)


def served_file(artifact: Any) -> Path:
    """The file the artifact's runtime reads: OpenVINO IR written beside model.onnx when there is one (what
    ships is what is measured), else the artifact's own file."""
    path = Path(artifact.path)
    runtime, _ = serving_runtime(artifact)
    if runtime == "openvino" and path.suffix == ".onnx" and path.with_suffix(".xml").is_file():
        return path.with_suffix(".xml")
    return path


def serving_runtime(artifact: Any) -> tuple[str, str]:
    """(runtime, precision) a model artifact is meant to run with: what a target pass recorded (its typed
    `served_on`, never the model file's metadata), else the runtime its file suffix names, in the graph's own
    precision."""
    served_on = getattr(artifact, "served_on", None)
    if served_on is not None:
        return served_on.runtime, served_on.precision
    return runtime_for(Path(artifact.path)), "fp32"
