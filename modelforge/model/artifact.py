"""ModelArtifact: a model file on disk plus what the pipeline knows about it (format, inputs/outputs).

What steers the pipeline (the runtime a model is served on, the folders a writer copies, the factory that builds
a module) lives in typed fields that only modelforge's own code sets. A model file's own metadata
(`metadata_props`) is kept apart in `model_metadata`: it travels with the model and is never read for a decision,
since whoever made the file would otherwise choose paths, code or the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modelforge.model.huggingface.info import HFInfo

Dim = int | str | None  # fixed size, symbolic name, or unknown


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name, e.g. "float32", "int64"
    shape: tuple[Dim, ...]

    def shape_text(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class IOSpec:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)


# What each CPU runtime can be asked to execute. onnxruntime's CPU provider runs a graph in its own precision
# (float, or INT8 where the graph is quantized) and has no bf16 execution mode.
RUNTIME_PRECISIONS = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}


@dataclass(frozen=True)
class ServedOn:
    """The runtime and precision a target pass chose to serve a model with. Only names modelforge knows are
    accepted (`RUNTIME_PRECISIONS`): a value read back from a cache entry is checked
    here, and a bad one is a ValueError, never a path or a module to load."""

    runtime: str
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in RUNTIME_PRECISIONS.get(self.runtime, ()):
            raise ValueError(f"unknown serving runtime/precision {self.runtime!r}/{self.precision!r}")


@dataclass(frozen=True)
class Publication:
    """A model folder a pass built in its work folder for a long-lived place outside the run's output (a
    Triton repository named with --repository): added by the pipeline once the run's output is in place and
    its gates passed (modelforge.export.triton.publish_model)."""

    staged: Path
    destination: Path
    version: int


@dataclass
class ModelArtifact:
    """A model on disk. Every field but `model_metadata` is set by modelforge's own code (loaders, passes)."""

    path: Path
    # onnx | huggingface (a folder) | torch-export | torchscript | torch-module (factory + weights) | keras | ...
    format: str
    io: IOSpec | None = None
    # The model file's own metadata (ONNX metadata_props), for display only: it reaches the written model because
    # the file itself is written, never through a decision made on it.
    model_metadata: dict[str, str] = field(default_factory=dict)
    # What a target pass labelled the result with (quantize --target openvino/auto); None: the file's own runtime.
    served_on: ServedOn | None = None
    # Folders a pass built in its work folder (a Triton repository, a Jetson bundle) that the writer copies into
    # the output beside the model.
    side_outputs: tuple[Path, ...] = ()
    # Model folders to add to a repository outside the output after the run (export --repository).
    publications: tuple[Publication, ...] = ()
    # Training state a pass left in its work folder (best and last epoch), written to checkpoints/.
    checkpoints: tuple[Path, ...] = ()
    # `module:function` the user named on the command line or in the recipe (format torch-module).
    factory: str | None = None
    # Which Keras loads the file: "keras3" or "tf_keras" (None: detect from the file's saved Keras version).
    keras_flavor: str | None = None
    # The Hugging Face folder this model came from (format huggingface, and every artifact derived from it): the
    # task for metrics, and the folder whose companion files the output writer copies.
    huggingface: HFInfo | None = None
    # OpenVINO IR (model.xml; model.bin beside it) a target pass built itself rather than by converting `path`:
    # NNCF's quantization (quantize --target openvino, issue 24). The writer copies it beside model.onnx and the
    # evaluation runs it; None: the IR, when served on OpenVINO, is converted from `path`.
    openvino_ir: Path | None = None

    def files(self) -> list[Path]:
        """The model file and the external-data files it references, for sizes and manifests."""
        if self.format == "onnx":
            from modelforge.model.external_data import external_data_files

            return [self.path, *external_data_files(self.path)]
        if self.path.is_dir():  # a SavedModel folder: every file in it
            return sorted(p for p in self.path.rglob("*") if p.is_file())
        return [self.path]

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files())
