"""Open a model file as an artifact: ONNX as is, PyTorch converted to ONNX once (the hub format).

A Hugging Face folder (config.json, safetensors weights, tokenizer or image processor) is checked by
`model.huggingface` before transformers loads it; its pickled `pytorch_model.bin` is never read.

PyTorch models are accepted as `torch.export` programs (.pt2), TorchScript archives, or code (`module:function`)
plus weights (safetensors, or a state dict read weights-only), never by unpickling a whole module: a pickle can
run arbitrary code.

TorchScript archives and TensorFlow SavedModels are programs: their code runs when they are loaded or traced
(a scripted `forward` or a SavedModel signature can read and write any file). They load only when the person at
the command line said `--trust-model-code` (`trust_code=True` here); `.pt2`, ONNX, Keras files (safe mode) do not
need it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from modelforge.errors import InputError
from modelforge.model.artifact import ModelArtifact

TORCH_SUFFIXES = {".pt", ".pth", ".ts", ".torchscript", ".jit"}


def detect_format(path: Path) -> str:
    if not path.exists():
        raise InputError(f"model {path} not found")
    from modelforge.model.tensorflow.formats import tf_format  # reads bytes only: TensorFlow is not imported

    tf_fmt = tf_format(path)
    if tf_fmt is not None:
        return tf_fmt
    from modelforge.model.huggingface.folder import is_hf_folder  # reads names only: transformers is not imported

    if is_hf_folder(path):
        return "huggingface"
    if path.is_dir():
        raise InputError(
            f"model {path} is a directory, expected a model file, a SavedModel folder or a Hugging Face folder "
            "(with config.json)"
        )
    suffix = path.suffix.lower()
    from modelforge.model.formats import check_bytes, unknown_suffix_error

    check_bytes(path, suffix)  # empty, or bytes of another format than the suffix says: named before any loading
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2":
        if not zipfile.is_zipfile(path):  # checked here, before torch is imported and any work starts
            raise InputError(f"model {path}: not a torch.export archive (.pt2 files are zip archives)")
        return "torch-export"
    if suffix == ".safetensors":
        raise InputError(
            f"model {path}: weights alone are not a model", hint="pass --model-factory module:function to build it"
        )
    if suffix in TORCH_SUFFIXES:
        if not zipfile.is_zipfile(path):
            raise InputError(f"model {path}: not a TorchScript archive")
        names = zipfile.ZipFile(path).namelist()
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        raise InputError(
            f"model {path}: looks like a pickled PyTorch module or state dict, which is never unpickled",
            hint="save it with torch.export.save(torch.export.export(model, args), 'model.pt2')",
        )
    raise unknown_suffix_error(path)  # says what the bytes are (an ONNX model named .bin: rename it)


# Formats whose files hold code that runs when the model is loaded or traced: (what, the safe alternative).
CODE_FORMATS = {
    "torchscript": (
        "a TorchScript archive holds code that runs when it is loaded",
        "save it as a .pt2 with torch.export.save(torch.export.export(model, args), 'model.pt2'), which holds no code",
    ),
    "savedmodel": (
        "a SavedModel's graph runs when it is loaded and can read and write files",
        "save the Keras model as model.keras (loaded in Keras safe mode), or export it to .pt2 or ONNX",
    ),
}


def refuse_code_format(path: Path, fmt: str, trust_code: bool) -> None:
    """Exit 2 before anything loads a model that is a program, unless the user trusted it on the command line."""
    if path.is_dir() and (path / "saved_model.pb").is_file():  # whatever format a recipe claims for it
        fmt = "savedmodel"
    if fmt in CODE_FORMATS and not trust_code:
        why, alternative = CODE_FORMATS[fmt]
        raise InputError(
            f"model {path}: {why}; refused unless you pass --trust-model-code", hint=f"safer: {alternative}"
        )


def load_model(
    path: Path,
    format: str = "auto",
    factory: str | None = None,
    trust_code: bool = False,
    task: str | None = None,
    trust_remote_code: bool = False,
) -> ModelArtifact:
    """`trust_code`: the command line said --trust-model-code (TorchScript and SavedModels load only then);
    `task`, `trust_remote_code` (--trust-remote-code): for a Hugging Face folder."""
    if factory is not None or format == "torch-module":
        if not path.is_file():
            raise InputError(f"weights {path} not found")
        return ModelArtifact(path=path, format="torch-module", factory=factory)
    fmt = detect_format(path) if format == "auto" else format
    refuse_code_format(path, fmt, trust_code)
    if task is not None and fmt != "huggingface":  # never silently ignored
        raise InputError(f"model {path}: --task (model.task) applies to Hugging Face folders only")
    if fmt == "onnx":
        from modelforge.model.onnx_model import onnx_artifact

        return onnx_artifact(path)
    if fmt in ("keras", "savedmodel"):
        from modelforge.model.tensorflow.loading import tf_artifact

        return tf_artifact(path, fmt)
    if fmt == "huggingface":
        from modelforge.model.huggingface.load import hf_artifact

        return hf_artifact(path, task, trust_remote_code)
    if not path.is_file():
        raise InputError(f"model {path} not found")
    return ModelArtifact(path=path, format=fmt)
