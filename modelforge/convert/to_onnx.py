"""Convert a PyTorch or TensorFlow artifact to ONNX, the hub format: once per run, recording what the exporter did."""

from __future__ import annotations

import zipfile
from pathlib import Path

from modelforge.errors import InputError, PassError, first_line
from modelforge.model.artifact import ModelArtifact
from modelforge.model.torch.safe_load import import_torch, load_exported_program, load_torchscript
from modelforge.quiet import quiet


def _export_program(torch, program, exported: Path, opset: int) -> None:
    # artifacts_dir: where the exporter would put reports and dumps (off by default): never the user's cwd
    torch.onnx.export(
        program, (), str(exported), opset_version=opset, dynamo=True, verbose=False, artifacts_dir=str(exported.parent)
    )


def _export(torch, artifact: ModelArtifact, exported: Path, opset: int, example_inputs: dict | None) -> str:
    if artifact.format == "torch-export":
        _export_program(torch, load_exported_program(torch, artifact.path), exported, opset)
        return "torch.onnx (dynamo) from torch.export program"
    if artifact.format == "torch-module":
        from modelforge.model.torch.export import export_program
        from modelforge.model.torch.loading import build_from_factory

        module = build_from_factory(artifact.factory, artifact.path)
        example = tuple(torch.from_numpy(v) for v in example_inputs.values())
        try:
            program = export_program(module, example, stage="convert")
        except PassError as exc:  # code that torch.export cannot trace is the user's input to fix
            raise InputError(f"model factory {artifact.factory}: {exc.message.split(': ', 1)[1]}") from None
        _export_program(torch, program, exported, opset)
        return "torch.onnx (dynamo) from the factory's module, via torch.export"
    module = load_torchscript(torch, artifact.path)
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
    artifact: ModelArtifact,
    workdir: Path,
    opset: int,
    example_inputs: dict | None = None,
    exporter: str = "auto",
    trust_remote_code: bool = False,
) -> tuple[ModelArtifact, dict]:
    """Export a PyTorch (or TensorFlow, or Hugging Face) artifact to ONNX; returns the ONNX artifact and what the
    conversion did. `exporter`, `trust_remote_code`: for Hugging Face folders (auto|optimum|torch)."""
    if artifact.format == "huggingface":
        from modelforge.convert.huggingface import hf_to_onnx

        return hf_to_onnx(artifact, workdir, opset, example_inputs, exporter, trust_remote_code)
    if artifact.format in ("keras", "savedmodel"):
        from modelforge.convert.tensorflow import tf_to_onnx

        return tf_to_onnx(artifact, workdir, opset, example_inputs)
    torch = import_torch()
    from modelforge.model.onnx_model import load_onnx, onnx_artifact, opset_version, save_onnx

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
        raise PassError("convert", f"PyTorch to ONNX export failed: {first_line(exc)}") from exc
    # The dynamo exporter writes weights to a side `.data` file and may raise the opset it was asked
    # for: re-save as one file where it fits and record the opset actually produced.
    model = load_onnx(exported)
    produced_opset = opset_version(model)
    for key, value in pt2_extra_files(artifact).items():  # e.g. the 2:4 sparsity record, for TensorRT's export
        model.metadata_props.add(key=key, value=value)
    save_onnx(model, target)
    info = {"exporter": exporter, "opset_requested": opset, "opset": produced_opset}
    return onnx_artifact(target), info
