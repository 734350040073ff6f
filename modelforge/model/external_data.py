"""The files an ONNX model's external-data tensors name, kept inside the model's folder (a file's say is untrusted)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from modelforge.errors import InputError

if TYPE_CHECKING:
    import onnx


def external_data_files(path: Path, model: onnx.ModelProto | None = None) -> list[Path]:
    """Files referenced by the model's external-data tensors (without loading the weights).

    A location is the model file's say, so it must stay inside the model's folder: an absolute path, a `..`, a
    link, or a folder link leading out is refused (exit 2) before anything is opened, measured or hashed, else
    sizes, hashes and copies would probe or read any file the model names."""
    import onnx

    if model is None:
        model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    return [_inside_model_folder(path, loc) for loc in sorted(locations)]


def _inside_model_folder(path: Path, location: str) -> Path:
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    problem = None
    if not location or posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        problem = "is absolute"
    elif ".." in posix.parts or ".." in windows.parts:
        problem = "contains '..'"
    else:
        target = path.parent / location
        if target.is_symlink():
            problem = "is a symbolic link"
        elif not target.resolve().is_relative_to(path.parent.resolve()):
            problem = "resolves outside the model's folder"
    if problem:
        raise InputError(
            f"{path}: external data location {location!r} {problem}; expected a file inside {path.parent}",
            hint="keep the weight files the model references beside it",
        )
    return path.parent / location
