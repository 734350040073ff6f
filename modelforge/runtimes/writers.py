"""What each model format writes into an output folder: one small writer per format.

The pipeline asks the final artifact (and the last PyTorch form a pass produced) to write itself; new targets
(OpenVINO IR, .tflite, TensorRT engines) add a writer here instead of editing the pipeline. A model that came
from a Hugging Face folder also gets that folder's companion files (tokenizer, config), so the output is a
Hugging Face folder that optimum's ORTModel classes, or tokenizers + onnxruntime, load as it is.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelforge.errors import InputError, PassError
from modelforge.model.artifact import ModelArtifact
from modelforge.safe_files import check_not_link, copy_file, copy_tree, link_refused, make_dirs, open_for_write


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

    The model may be one this writer already converted in this process (an export after an OpenVINO quantize
    writes model.onnx and its IR into its work folder, and the run's output needs them again): while those
    files hold what was written, the IR is copied instead of converted twice (the same files, byte for byte)."""
    from modelforge.runtimes.openvino import write_ir

    bf16 = artifact.served_on is not None and artifact.served_on.precision == "bf16"
    xml = onnx_file.with_suffix(".xml")
    if artifact.openvino_ir is not None:  # an IR the pass built itself (NNCF's INT8): what was measured ships
        built = artifact.openvino_ir
        return [copy_file(f, xml.with_suffix(f.suffix), onnx_file.parent) for f in (built, built.with_suffix(".bin"))]
    earlier = _CONVERTED.get(_key(artifact.path))
    if earlier is not None and earlier.compress_to_fp16 == bf16 and earlier.unchanged():
        return [copy_file(ir, xml.with_suffix(ir.suffix), onnx_file.parent) for ir in earlier.ir_files]
    ir_files = write_ir(onnx_file, xml, compress_to_fp16=bf16, stage="openvino")
    weights = onnx_file.with_name(onnx_file.name + ".data")  # save_onnx's name for external data
    sources = [onnx_file, weights] if weights.is_file() else [onnx_file]
    _CONVERTED[_key(onnx_file)] = _Conversion(bf16, _digests(sources), _digests(ir_files))
    while len(_CONVERTED) > _CONVERSIONS_KEPT:  # a long-lived process (tests) keeps only the latest few
        del _CONVERTED[next(iter(_CONVERTED))]
    return ir_files


@dataclass(frozen=True)
class _Conversion:
    """An ONNX file this process converted to OpenVINO IR: the digests of the model's files and of the IR."""

    compress_to_fp16: bool
    sources: dict[Path, str | None]
    ir: dict[Path, str | None]

    @property
    def ir_files(self) -> list[Path]:
        return list(self.ir)

    def unchanged(self) -> bool:
        """Every file still holds what it held at conversion (gone, a link, or rewritten since: convert again)."""
        recorded = {**self.sources, **self.ir}
        return None not in recorded.values() and _digests(list(recorded)) == recorded


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _digests(paths: list[Path]) -> dict[Path, str | None]:
    """sha256 of each file (None: missing or a link)."""
    from modelforge.manifest import file_sha256

    return {path: None if path.is_symlink() or not path.is_file() else file_sha256(path) for path in paths}


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


def write_huggingface(artifact: ModelArtifact, folder: Path) -> list[Path]:
    """The weights and config.json of a Hugging Face folder a pass saved (a pruned or distilled model,
    save_pretrained into its work folder): that model's own config, not the original's."""
    written = []
    for file in sorted(artifact.path.iterdir()):
        if file.name in HF_MODEL_FILES or file.suffix == ".safetensors":
            written.append(copy_file(file, folder / file.name, folder))
    return written


# What write_huggingface takes from a pass's saved folder, beside the *.safetensors weights.
HF_MODEL_FILES = ("config.json", "model.safetensors.index.json", "generation_config.json")


def write_hf_companions(artifact: ModelArtifact, folder: Path) -> list[Path]:
    """The original folder's companion files (tokenizer or image processor, config.json, sentence-transformers
    pooling), byte for byte, by the fixed allow-list COMPANION_FILES: the output is a Hugging Face folder again.
    A file already written (a pruned model's own config.json) is kept; a link is refused, never followed."""
    from modelforge.model.huggingface.folder import COMPANION_FILES

    source = artifact.huggingface.folder
    written = []
    for name in COMPANION_FILES:
        target = folder / name
        missing = not (source / name).exists() and not (source / name).is_symlink()
        if target.exists() or missing:
            continue
        written.append(_copy_regular(source / name, target, folder))
    if (source / "2_Normalize").is_dir() and not (source / "2_Normalize").is_symlink():
        make_dirs(folder / "2_Normalize", folder)  # sentence-transformers' Normalize module: an empty folder
    return written


def _copy_regular(source: Path, target: Path, root: Path) -> Path:
    """Copy a file of the user's folder, refusing a link (O_NOFOLLOW) or anything but a regular file."""
    check_not_link(source.parent)
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if source.is_symlink():
            raise link_refused(source) from None
        raise InputError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise InputError(f"{source}: not a regular file")
        with open_for_write(target, root) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return target


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
    "huggingface": write_huggingface,
}


def write_artifact(artifact: ModelArtifact, folder: Path) -> list[Path]:
    writer = WRITERS.get(artifact.format)
    if writer is None:
        raise PassError("output", f"no writer for {artifact.format} models")
    written = writer(artifact, folder)
    if artifact.huggingface is not None:  # a model from a Hugging Face folder: its output is one again
        written += write_hf_companions(artifact, folder)
    for side_output in artifact.side_outputs:  # a target's own files (Triton repository, Jetson bundle)
        copy_tree(side_output, folder, folder)  # links in it are refused, never followed nor kept
    return written
