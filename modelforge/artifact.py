"""ModelArtifact: a model file on disk plus what the pipeline knows about it (format, inputs/outputs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class ModelArtifact:
    path: Path
    format: str  # onnx | torch-export | torchscript | torch-module (factory + weights) | keras | savedmodel | tflite
    io: IOSpec | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """The model file and the external-data files it references, for sizes and manifests."""
        if self.format == "onnx":
            from modelforge.onnx_model import external_data_files

            return [self.path, *external_data_files(self.path)]
        if self.path.is_dir():  # a SavedModel folder: every file in it
            return sorted(p for p in self.path.rglob("*") if p.is_file())
        return [self.path]

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files())

    def write_into(self, folder: Path) -> list[Path]:
        """Write this model's deliverable files into an output folder (model.onnx, model.pt2, ...); the first
        path returned is the model file. Each format's writer lives in `modelforge.writers`."""
        from modelforge.writers import write_artifact

        return write_artifact(self, folder)
