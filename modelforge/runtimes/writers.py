"""What each model format writes into an output folder: one small writer per format.

The pipeline asks the final artifact (and the last PyTorch form a pass produced) to write itself; new targets
(OpenVINO IR, .tflite, TensorRT engines) add a writer here instead of editing the pipeline.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelforge.errors import PassError
from modelforge.model.artifact import ModelArtifact
from modelforge.safe_files import copy_file, copy_tree


def write_onnx(artifact: ModelArtifact, folder: Path) -> list[Path]:
    """model.onnx (external data, when the model has some, renamed with it), plus the files of the runtime
    the artifact is served on (OpenVINO IR for `runtime: openvino`)."""
    from modelforge.model.external_data import external_data_files
    from modelforge.model.onnx_model import load_onnx, save_onnx

    target = folder / "model.onnx"
    if external_data_files(artifact.path):
        save_onnx(load_onnx(artifact.path), target)
    else:
        copy_file(artifact.path, target, folder)
    written = [target, *external_data_files(target)]
    served_on = artifact.served_on  # set by a target pass, never read from the model file
    runtime_writer = RUNTIME_WRITERS.get(served_on.runtime) if served_on is not None else None
    if runtime_writer is not None:
        written += runtime_writer(artifact, target)
    return written


def write_openvino_ir(artifact: ModelArtifact, onnx_file: Path) -> list[Path]:
    """model.xml + model.bin beside model.onnx (openvino.convert_model + save_model). Weights are stored as
    fp16 for bf16 serving (half the file; bf16 compute rounds them further anyway), exactly otherwise.

    The model may be one this writer already converted in this run (an export after an OpenVINO quantize
    writes model.onnx and its IR into its work folder, and the output needs them again): its IR is copied."""
    from modelforge.runtimes.openvino import write_ir

    bf16 = artifact.served_on is not None and artifact.served_on.precision == "bf16"
    xml = onnx_file.with_suffix(".xml")
    earlier = _CONVERTED.get(_key(artifact.path))
    if earlier is not None and earlier.compress_to_fp16 == bf16 and earlier.unchanged():
        return [copy_file(ir, xml.with_suffix(ir.suffix), onnx_file.parent) for ir in earlier.ir_files]
    written = write_ir(onnx_file, xml, compress_to_fp16=bf16, stage="openvino")
    _CONVERTED[_key(onnx_file)] = _Conversion(bf16, tuple((f, _stamp(f)) for f in (onnx_file, *written)))
    while len(_CONVERTED) > _CONVERSIONS_KEPT:  # a long-lived process (tests) keeps only the latest few
        del _CONVERTED[next(iter(_CONVERTED))]
    return written


@dataclass(frozen=True)
class _Conversion:
    """An ONNX file this process converted to OpenVINO IR, and the files as they were written."""

    compress_to_fp16: bool
    stamps: tuple[tuple[Path, tuple[int, int, int] | None], ...]  # the ONNX file, then model.xml, model.bin

    @property
    def ir_files(self) -> list[Path]:
        return [path for path, _ in self.stamps[1:]]

    def unchanged(self) -> bool:
        """Every file still there as written (a deleted work folder, or a file rewritten since, fails)."""
        return all(stamp is not None and _stamp(path) == stamp for path, stamp in self.stamps)


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Size, modification time and inode, without following a link (None: gone or a link)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return None if stat.S_ISLNK(info.st_mode) else (info.st_size, info.st_mtime_ns, info.st_ino)


# OpenVINO IR converted in this process, by the ONNX file it was converted from.
_CONVERTED: dict[Path, _Conversion] = {}
_CONVERSIONS_KEPT = 8


def write_torch_export(artifact: ModelArtifact, folder: Path) -> list[Path]:
    """model.pt2: a torch.export program, usable as the input of another run."""
    target = folder / "model.pt2"
    copy_file(artifact.path, target, folder)
    written = [target]
    for file in artifact.checkpoints:  # the training state a pass left (best and last epoch)
        written.append(copy_file(file, folder / "checkpoints" / Path(file).name, folder))
    return written


def write_keras(artifact: ModelArtifact, folder: Path) -> list[Path]:
    """model.keras or model.h5 (the suffix it was saved with: .h5 for Keras 2 models after TF-MOT pruning)."""
    target = folder / f"model{artifact.path.suffix.lower()}"
    copy_file(artifact.path, target, folder)
    return [target]


def write_savedmodel(artifact: ModelArtifact, folder: Path) -> list[Path]:
    """saved_model/: the SavedModel folder as is."""
    target = folder / "saved_model"
    copy_tree(artifact.path, target, folder)
    return [target]


def write_tflite(artifact: ModelArtifact, folder: Path) -> list[Path]:
    """model.tflite: a LiteRT flatbuffer."""
    target = folder / "model.tflite"
    copy_file(artifact.path, target, folder)
    return [target]


# runtime -> writer of the files it serves, beside model.onnx (given the ONNX file just written)
RUNTIME_WRITERS: dict[str, Callable[[ModelArtifact, Path], list[Path]]] = {
    "openvino": write_openvino_ir,
}

WRITERS: dict[str, Callable[[ModelArtifact, Path], list[Path]]] = {
    "onnx": write_onnx,
    "torch-export": write_torch_export,
    "keras": write_keras,
    "savedmodel": write_savedmodel,
    "tflite": write_tflite,
}


def write_artifact(artifact: ModelArtifact, folder: Path) -> list[Path]:
    writer = WRITERS.get(artifact.format)
    if writer is None:
        raise PassError("output", f"no writer for {artifact.format} models")
    written = writer(artifact, folder)
    for side_output in artifact.side_outputs:  # a target's own files (Triton repository, Jetson bundle)
        copy_tree(side_output, folder, folder)  # links in it are refused, never followed nor kept
    return written
