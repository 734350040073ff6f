"""A Triton Inference Server model repository: `<repo>/<name>/config.pbtxt` and `<repo>/<name>/<version>/<model>`.

The config comes from the model's inputs and outputs (Triton dtypes, -1 for dynamic dims, the batch axis as
max_batch_size), the batching settings from the measured sweep (export.batching), warm-up requests made of
real calibration samples written as the raw files Triton reads from `<name>/warmup/`. Every config is parsed
with Triton's own ModelConfig protobuf before it is written. A second export of the same name adds the next
version beside the existing ones (Triton serves the latest; the previous stays for a rollback).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.artifact import IOSpec, TensorSpec
from modelforge.errors import InputError, MissingExtraError, PassError

TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "bool": "TYPE_BOOL",
    "object": "TYPE_STRING",
}

# Model file type -> (config key, value, the files Triton expects in the version folder).
PLATFORMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    ".onnx": ("platform", "onnxruntime_onnx", ("model.onnx",)),
    ".plan": ("platform", "tensorrt_plan", ("model.plan",)),
    ".xml": ("backend", "openvino", ("model.xml", "model.bin")),
}

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_model_name(name: str) -> None:
    if not MODEL_NAME.match(name):
        raise InputError(f"--name {name!r}: a Triton model name is letters, digits, '_', '.', '-' (a folder name)")


@functools.cache
def model_config_pb2() -> Any:
    """Triton's ModelConfig protobuf module, loaded from the tritonclient wheel without its gRPC client."""
    spec = importlib.util.find_spec("tritonclient")
    location = Path(spec.origin).parent / "grpc" / "model_config_pb2.py" if spec and spec.origin else None
    if location is None or not location.is_file():
        raise MissingExtraError("tritonclient", "triton", "checking Triton model configs")
    module_spec = importlib.util.spec_from_file_location("modelforge_triton_model_config_pb2", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse_config(text: str) -> Any:
    """Parse config.pbtxt text into Triton's ModelConfig (raises PassError on anything Triton would reject)."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, model_config_pb2().ModelConfig())
    except text_format.ParseError as exc:
        raise PassError("export", f"generated config.pbtxt does not parse as Triton's ModelConfig: {exc}") from exc


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    shape = spec.shape[1:] if batched else spec.shape
    return [d if isinstance(d, int) else -1 for d in shape] or [1]


def _dtype(spec: TensorSpec) -> str:
    if spec.dtype not in TRITON_DTYPES:
        raise PassError("export", f"tensor '{spec.name}': dtype {spec.dtype} has no Triton equivalent")
    return TRITON_DTYPES[spec.dtype]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensor_block(spec: TensorSpec, batched: bool, label_file: str | None = None) -> str:
    dims = ", ".join(str(d) for d in _dims(spec, batched))
    label = f"\n    label_filename: {_quote(label_file)}" if label_file else ""
    return f"  {{\n    name: {_quote(spec.name)}\n    data_type: {_dtype(spec)}\n    dims: [ {dims} ]{label}\n  }}"


def warmup_file_name(input_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", input_name) + ".raw"


def config_text(
    *,
    name: str,
    model_suffix: str,
    io: IOSpec,
    max_batch_size: int,
    batching: dict[str, Any] | None,
    instance_kind: str,
    instance_count: int,
    warmup_inputs: dict[str, TensorSpec] | None,
    labels: bool,
    tensorrt_accelerator: str | None,
) -> str:
    """The config.pbtxt text (Triton's protobuf text format)."""
    key, value, files = PLATFORMS[model_suffix]
    batched = max_batch_size > 0
    lines = [f"name: {_quote(name)}", f"{key}: {_quote(value)}", f"max_batch_size: {max_batch_size}"]
    if model_suffix != ".onnx":
        lines.append(f"default_model_filename: {_quote(files[0])}")
    lines.append("input [\n" + ",\n".join(_tensor_block(t, batched) for t in io.inputs) + "\n]")
    outputs = [_tensor_block(t, batched, "labels.txt" if labels and i == 0 else None) for i, t in enumerate(io.outputs)]
    lines.append("output [\n" + ",\n".join(outputs) + "\n]")
    if batched and batching:
        preferred = ", ".join(str(b) for b in batching["preferred_batch_sizes"])
        lines.append(
            "dynamic_batching {\n"
            f"  preferred_batch_size: [ {preferred} ]\n"
            f"  max_queue_delay_microseconds: {batching['max_queue_delay_microseconds']}\n"
            "}"
        )
    lines.append(f"instance_group [\n  {{\n    count: {instance_count}\n    kind: {instance_kind}\n  }}\n]")
    if warmup_inputs:
        blocks = []
        for input_name, spec in warmup_inputs.items():
            dims = ", ".join(str(d) for d in spec.shape)
            blocks.append(
                f"      key: {_quote(input_name)}\n      value {{\n        data_type: {_dtype(spec)}\n"
                f"        dims: [ {dims} ]\n        input_data_file: {_quote(warmup_file_name(input_name))}\n      }}"
            )
        inputs = "\n".join(f"    inputs {{\n{b}\n    }}" for b in blocks)
        lines.append(f'model_warmup [\n  {{\n    name: "calibration_sample"\n    batch_size: 1\n{inputs}\n  }}\n]')
    if tensorrt_accelerator and model_suffix == ".onnx":
        lines.append(
            "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator : [\n      {\n"
            '        name : "tensorrt"\n'
            f'        parameters {{ key: "precision_mode" value: {_quote(tensorrt_accelerator.upper())} }}\n'
            '        parameters { key: "max_workspace_size_bytes" value: "1073741824" }\n'
            "      }\n    ]\n  }\n}"
        )
    return "\n".join(lines) + "\n"


def next_version(model_dir: Path) -> int:
    """1 for a new model; one above the highest numbered version folder otherwise."""
    versions = (
        [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    )
    return max(versions, default=0) + 1


def read_labels(path: Path, classes: int | None) -> list[str]:
    if not path.is_file():
        raise InputError(f"labels {path} not found")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if classes is not None and len(labels) != classes:
        raise InputError(f"labels {path}: {len(labels)} label(s), expected {classes} (the first output's classes)")
    return labels


# What every run writes at the output's top level: replaced by the new run, never carried over.
RUN_OUTPUTS = frozenset(
    {"model.onnx", "report.json", "report.md", "report.html", "manifest.json", "recipe.resolved.yaml"}
    | {"baseline_stats.json"}
)


def carry_repository(existing: Path, into: Path) -> None:
    """Everything of an existing repository but the previous run's own outputs (other models, other versions,
    the user's files), hard-linked (or copied) into the new output, which replaces it as a whole.

    The repository may come from someone else: a link anywhere in it is refused (exit 2), never followed nor
    copied, so nothing outside it is read into the new output or written through later."""
    from modelforge.safe_files import check_not_link, copy_tree, link_or_copy

    for entry in sorted(existing.iterdir()):
        if entry.name in RUN_OUTPUTS or entry.name.startswith("model.onnx") or ".partial-" in entry.name:
            continue
        check_not_link(entry)
        if entry.is_dir():
            copy_tree(entry, into / entry.name, root=into, hard_link=True)
        else:
            link_or_copy(entry, into / entry.name, into)


def write_model_folder(
    repository: Path,
    *,
    name: str,
    model_files: list[Path],
    config: str,
    warmup: dict[str, np.ndarray] | None,
    labels: list[str] | None,
) -> int:
    """Add the next version of `name` to `repository` (config, model files, warm-up data, labels); returns it."""
    from modelforge.safe_files import check_not_link, copy_file, make_dirs, write_bytes, write_text

    parse_config(config)
    model_dir = repository / name
    check_not_link(model_dir)  # before next_version lists what a link would point at
    version = next_version(model_dir)
    target = model_dir / str(version)
    if target.exists() or target.is_symlink():
        raise PassError("export", f"version folder {target} already exists")
    make_dirs(target, repository)
    _, _, names = PLATFORMS[model_files[0].suffix.lower()]
    for source, file_name in zip(model_files, names, strict=False):
        copy_file(source, target / file_name, repository)
    write_text(model_dir / "config.pbtxt", config, repository)
    if warmup:
        for input_name, sample in warmup.items():
            # Triton reads the raw bytes of one sample, row-major, in the tensor's dtype (little-endian).
            raw = np.ascontiguousarray(sample, dtype=sample.dtype.newbyteorder("<")).tobytes()
            write_bytes(model_dir / "warmup" / warmup_file_name(input_name), raw, repository)
    if labels:
        write_text(model_dir / "labels.txt", "\n".join(labels) + "\n", repository)
    return version


def is_repository(folder: Path) -> bool:
    """A folder holding at least one `<model>/config.pbtxt`: a Triton model repository."""
    return folder.is_dir() and any((p / "config.pbtxt").is_file() for p in folder.iterdir() if p.is_dir())
