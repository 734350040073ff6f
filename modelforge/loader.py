"""Open a model file as an artifact: ONNX as is, PyTorch converted to ONNX once (the hub format).

PyTorch models are accepted as `torch.export` programs (.pt2), TorchScript archives, or code (`module:function`)
plus weights (safetensors, or a state dict read weights-only), never by unpickling a whole module: a pickle can
run arbitrary code.

TorchScript archives and TensorFlow SavedModels are programs: their code runs when they are loaded or traced
(a scripted `forward` or a SavedModel signature can read and write any file). They load only when the person at
the command line said `--trust-model-code` (`trust_code=True` here); `.pt2`, ONNX, Keras files (safe mode) do not
need it.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

from modelforge.artifact import ModelArtifact
from modelforge.errors import InputError, MissingExtraError, PassError
from modelforge.quiet import quiet

TORCH_SUFFIXES = {".pt", ".pth", ".ts", ".torchscript", ".jit"}


def detect_format(path: Path) -> str:
    if not path.exists():
        raise InputError(f"model {path} not found")
    from modelforge.tensorflow.formats import tf_format  # reads bytes only: TensorFlow is not imported

    tf_fmt = tf_format(path)
    if tf_fmt is not None:
        return tf_fmt
    if path.is_dir():
        raise InputError(f"model {path} is a directory, expected a model file (or a SavedModel folder)")
    suffix = path.suffix.lower()
    from modelforge.model_format import check_bytes, unknown_suffix_error

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


def load_model(path: Path, format: str = "auto", factory: str | None = None, trust_code: bool = False) -> ModelArtifact:
    """`trust_code`: the command line said --trust-model-code (TorchScript and SavedModels load only then)."""
    if factory is not None or format == "torch-module":
        if not path.is_file():
            raise InputError(f"weights {path} not found")
        return ModelArtifact(path=path, format="torch-module", factory=factory)
    fmt = detect_format(path) if format == "auto" else format
    refuse_code_format(path, fmt, trust_code)
    if fmt == "onnx":
        from modelforge.onnx_model import onnx_artifact

        return onnx_artifact(path)
    if fmt in ("keras", "savedmodel"):
        from modelforge.tensorflow.loading import tf_artifact

        return tf_artifact(path, fmt)
    if not path.is_file():
        raise InputError(f"model {path} not found")
    return ModelArtifact(path=path, format=fmt)


def _import_torch():
    try:
        import torch
    except ImportError:
        raise MissingExtraError("torch", "torch", "loading a PyTorch model") from None
    return torch


class UnsafePickleError(Exception):
    """A .pt2 archive asked for a full (code-running) unpickling."""


@contextlib.contextmanager
def _weights_only_unpickling(torch) -> Iterator[None]:
    """torch.export.load falls back to full unpickling (torch's loader with weights-only off, `pickle.loads`)
    for some archive members, e.g. when its sample inputs do not load weights-only: a crafted .pt2 would run
    code. While it loads, every torch.load is weights-only and the archive reader's pickle.loads refuses."""
    import importlib

    real_load = torch.load

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    class _RefusingPickle:
        def __getattr__(self, name: str):
            raise UnsafePickleError(f"pickle.{name}")

    try:
        package = importlib.import_module("torch.export.pt2_archive._package")
    except ImportError:  # older torch: no such reader
        package = None
    real_pickle = getattr(package, "pickle", None)
    torch.load = weights_only_load
    if real_pickle is not None:
        package.pickle = _RefusingPickle()
    try:
        yield
    finally:
        torch.load = real_load
        if real_pickle is not None:
            package.pickle = real_pickle


def _load_exported_program(torch, path: Path):
    import pickle

    from modelforge.model_format import check_bytes

    check_bytes(path, ".pt2")  # torch logs a long traceback for a file that is no zip archive: refused first
    try:
        with _weights_only_unpickling(torch), quiet():
            return torch.export.load(str(path))
    except (UnsafePickleError, pickle.UnpicklingError):
        raise InputError(
            f"model {path}: the archive holds pickled objects that only a full unpickling could load; "
            "refused, since a pickle can run arbitrary code",
            hint="re-save it with torch.export.save from plain tensors, or export it to ONNX yourself",
        ) from None
    except Exception as exc:  # a corrupt or truncated archive, or one torch cannot read: bad input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"model {path}: not a readable torch.export archive ({first})") from exc


def _load_torchscript(torch, path: Path):
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # a corrupt or truncated archive: bad input, not a failed conversion
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"model {path}: not a readable TorchScript archive ({first})") from exc


def _export_program(torch, program, exported: Path, opset: int) -> None:
    # artifacts_dir: where the exporter would put reports and dumps (off by default): never the user's cwd
    torch.onnx.export(
        program, (), str(exported), opset_version=opset, dynamo=True, verbose=False, artifacts_dir=str(exported.parent)
    )


def _export(torch, artifact: ModelArtifact, exported: Path, opset: int, example_inputs: dict | None) -> str:
    if artifact.format == "torch-export":
        _export_program(torch, _load_exported_program(torch, artifact.path), exported, opset)
        return "torch.onnx (dynamo) from torch.export program"
    if artifact.format == "torch-module":
        from modelforge.torch.export import export_program
        from modelforge.torch.loading import build_from_factory

        module = build_from_factory(artifact.factory, artifact.path)
        example = tuple(torch.from_numpy(v) for v in example_inputs.values())
        try:
            program = export_program(module, example, stage="convert")
        except PassError as exc:  # code that torch.export cannot trace is the user's input to fix
            raise InputError(f"model factory {artifact.factory}: {exc.message.split(': ', 1)[1]}") from None
        _export_program(torch, program, exported, opset)
        return "torch.onnx (dynamo) from the factory's module, via torch.export"
    module = _load_torchscript(torch, artifact.path)
    names = list(example_inputs)
    torch.onnx.export(
        module,
        tuple(torch.from_numpy(v) for v in example_inputs.values()),
        str(exported),
        input_names=names,
        opset_version=opset,
        dynamo=False,
        dynamic_axes={n: {0: "batch"} for n in names},
    )
    return "torch.onnx (TorchScript) from TorchScript archive"


def example_inputs(source, count: int = 1) -> dict | None:
    """TorchScript has no input shapes of its own: one sample of the data (a DataSource) to trace with;
    TensorFlow conversions are checked on `count` samples."""
    if source is None:
        return None
    import numpy as np

    from modelforge.data import open_dataset

    dataset = open_dataset(source)
    count = min(count, dataset.num_samples) if count > 1 else 1
    return {key: np.array(dataset.read(key, 0, count)) for key in dataset.arrays}


# Side records a pass stores in its .pt2 (torch.export.save extra_files) that the ONNX form keeps as metadata.
CARRIED_EXTRA_FILES = ("modelforge.sparsity",)


def pt2_extra_files(artifact: ModelArtifact) -> dict[str, str]:
    if artifact.format != "torch-export" or not zipfile.is_zipfile(artifact.path):
        return {}
    found = {}
    with zipfile.ZipFile(artifact.path) as archive:
        for name in archive.namelist():
            key = name.rsplit("/", 1)[-1]
            if "/extra/" in name and key in CARRIED_EXTRA_FILES:
                found[key] = archive.read(name).decode()
    return found


def convert_to_onnx(
    artifact: ModelArtifact, workdir: Path, opset: int, example_inputs: dict | None = None
) -> tuple[ModelArtifact, dict]:
    """Export a PyTorch (or TensorFlow) artifact to ONNX; returns the ONNX artifact and what the conversion did."""
    if artifact.format in ("keras", "savedmodel"):
        from modelforge.tensorflow.convert import tf_to_onnx

        return tf_to_onnx(artifact, workdir, opset, example_inputs)
    torch = _import_torch()
    from modelforge.onnx_model import load_onnx, onnx_artifact, opset_version, save_onnx

    target = workdir / "model.onnx"
    exported = workdir / "export" / "model.onnx"
    exported.parent.mkdir(parents=True, exist_ok=True)
    if artifact.format in ("torchscript", "torch-module") and not example_inputs:
        kind = "TorchScript" if artifact.format == "torchscript" else "a model built by a factory"
        raise InputError(f"model {artifact.path}: {kind} needs calibration or eval data for its input shapes")
    try:
        with quiet():
            exporter = _export(torch, artifact, exported, opset, example_inputs)
    except InputError:
        raise
    except Exception as exc:
        raise PassError("convert", f"PyTorch to ONNX export failed: {str(exc).splitlines()[0]}") from exc
    # The dynamo exporter writes weights to a side `.data` file and may raise the opset it was asked
    # for: re-save as one file where it fits and record the opset actually produced.
    model = load_onnx(exported)
    produced_opset = opset_version(model)
    for key, value in pt2_extra_files(artifact).items():  # e.g. the 2:4 sparsity record, for TensorRT's export
        model.metadata_props.add(key=key, value=value)
    save_onnx(model, target)
    info = {"exporter": exporter, "opset_requested": opset, "opset": produced_opset}
    return onnx_artifact(target), info
