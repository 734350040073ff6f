"""A Triton Inference Server model repository: `<repo>/<name>/config.pbtxt` and `<repo>/<name>/<version>/<model>`.

The config comes from the model's inputs and outputs (Triton dtypes, -1 for dynamic dims, the batch axis as
max_batch_size), the batching settings from the measured sweep (export.batching), warm-up requests made of
real calibration samples written as the raw files Triton reads from `<name>/warmup/`. Every config is parsed
with Triton's own ModelConfig protobuf before it is written. A repository is shared and long-lived: each model's
files (its drift baseline included) live in its own folder, the root holds nothing else, and a second export
of the same name adds the next version beside the existing ones (Triton serves the latest; the previous stays
for a rollback) only when its signature matches the config they load under.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.errors import InputError, PassError, first_line
from modelforge.model.artifact import IOSpec, TensorSpec
from modelforge.optional import missing

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
        raise missing("tritonclient", "checking Triton model configs")
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
    # A [batch] tensor (a cascade's `escalated` flags): Triton's dims cannot be empty, so [1] reshaped to [].
    reshape = "\n    reshape: { shape: [ ] }" if batched and not spec.shape[1:] else ""
    head = f"  {{\n    name: {_quote(spec.name)}\n    data_type: {_dtype(spec)}\n"
    return f"{head}    dims: [ {dims} ]{label}{reshape}\n  }}"


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
    warmup_generated: bool = False,
    tensorrt_accelerator: str | None,
) -> str:
    """The config.pbtxt text (Triton's protobuf text format). `warmup_generated`: no sample to warm up with,
    so Triton makes one (random_data for floats; zero_data for integers and booleans, which may be ids or
    indices that random values would put out of range)."""
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
            if not warmup_generated:
                source = f"input_data_file: {_quote(warmup_file_name(input_name))}"
            else:
                source = "random_data: true" if spec.dtype.startswith(("float", "bfloat")) else "zero_data: true"
            blocks.append(
                f"      key: {_quote(input_name)}\n      value {{\n        data_type: {_dtype(spec)}\n"
                f"        dims: [ {dims} ]\n        {source}\n      }}"
            )
        inputs = "\n".join(f"    inputs {{\n{b}\n    }}" for b in blocks)
        title = "generated_sample" if warmup_generated else "calibration_sample"
        lines.append(f'model_warmup [\n  {{\n    name: "{title}"\n    batch_size: 1\n{inputs}\n  }}\n]')
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


def write_model_folder(
    root: Path,
    *,
    name: str,
    version: int,
    model_files: list[Path],
    config: str,
    warmup: dict[str, np.ndarray] | None,
    labels: list[str] | None,
) -> Path:
    """Build `<root>/<name>/` (config, version `version` with the model files, warm-up data, labels) in a
    folder of this run's own; returns the model folder. It reaches a repository through publish_model."""
    from modelforge.safe_files import copy_file, make_dirs, write_bytes, write_text

    parse_config(config)
    model_dir = root / name
    target = model_dir / str(version)
    make_dirs(target, root)
    _, _, names = PLATFORMS[model_files[0].suffix.lower()]
    for source, file_name in zip(model_files, names, strict=False):
        copy_file(source, target / file_name, root)
    write_text(model_dir / "config.pbtxt", config, root)
    if warmup:
        for input_name, sample in warmup.items():
            # Triton reads the raw bytes of one sample, row-major, in the tensor's dtype (little-endian).
            raw = np.ascontiguousarray(sample, dtype=sample.dtype.newbyteorder("<")).tobytes()
            write_bytes(model_dir / "warmup" / warmup_file_name(input_name), raw, root)
    if labels:
        write_text(model_dir / "labels.txt", "\n".join(labels) + "\n", root)
    return model_dir


# What a model folder holds for all its versions: a new version replaces these (the run's output keeps the old
# ones under replaced/); numbered version folders are never touched.
SHARED_FILES = ("config.pbtxt", "labels.txt", "baseline_stats.json", "warmup")


def signature(config: Any) -> str:
    """What every version of a model must agree on, as one line: the serving backend, batching (whether the
    first axis is Triton's batch axis) and each input and output's name, dtype and dims."""
    pb2 = model_config_pb2()

    def tensors(items: Any) -> str:
        return ", ".join(
            f"{t.name} {pb2.DataType.Name(t.data_type).removeprefix('TYPE_')} [{', '.join(map(str, t.dims))}]"
            for t in items
        )

    runtime = BACKEND_PLATFORMS.get(config.backend, config.backend) if config.backend else config.platform
    batch = "batched" if config.max_batch_size > 0 else "unbatched"
    return f"{runtime}, {batch}; inputs: {tensors(config.input)}; outputs: {tensors(config.output)}"


# A hand-written config may name the backend where modelforge names the platform: the same runtime.
BACKEND_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}


def read_existing_config(path: Path) -> Any:
    """An existing model's config.pbtxt: someone else's file, so a parse error is bad input (exit 2)."""
    from google.protobuf import text_format

    from modelforge.safe_files import check_not_link

    check_not_link(path)
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2().ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{path}: not a Triton ModelConfig ({first_line(exc, limit=160)})") from None


def check_repository(repository: Path) -> None:
    """A folder the export may add a model to: missing, empty, or a Triton model repository (never a link)."""
    from modelforge.safe_files import check_not_link

    check_not_link(repository)
    if repository.exists() and not repository.is_dir():
        raise InputError(f"--repository {repository}: exists and is not a folder")
    if repository.is_dir() and any(repository.iterdir()) and not is_repository(repository):
        raise InputError(
            f"--repository {repository}: a folder with files but no <model>/config.pbtxt, not a Triton model "
            "repository",
            hint="name an empty folder, a new one, or an existing repository",
        )


def next_version_checked(repository: Path, name: str, new_config: str, replace_config: bool) -> int:
    """The version the new model gets in `repository`; a signature that differs from the existing config's is
    refused (exit 2, both named) unless `replace_config`: the other versions would no longer load under it."""
    from modelforge.safe_files import check_not_link

    model_dir = repository / name
    check_not_link(model_dir)  # before next_version lists what a link would point at
    if model_dir.is_dir():
        for entry in model_dir.iterdir():
            if entry.is_dir() and entry.name.isdigit():
                check_not_link(entry)
    existing = model_dir / "config.pbtxt"
    if (existing.is_file() or existing.is_symlink()) and not replace_config:
        current = read_existing_config(existing)
        old, new = signature(current), signature(parse_config(new_config))
        auto_completed = not current.input and not current.output  # Triton fills them in from the model
        if old != new and not (auto_completed and old.split(";")[0] == new.split(";")[0]):
            raise InputError(
                f"{existing}: the new version's signature differs from the model's config, under which its "
                f"versions {_versions_text(model_dir)} load. config: {old}. new version: {new}",
                hint="give it a new model name (--name) or replace the config (--replace-config)",
            )
    return next_version(model_dir)


def _versions_text(model_dir: Path) -> str:
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    return ", ".join(map(str, versions)) or "(none)"


def save_replaced(model_dir: Path, into: Path) -> list[str]:
    """Copy the model folder's shared files a new version replaces into the run's output (`into`): nothing a
    repository held is lost. Returns their names."""
    from modelforge.safe_files import check_not_link, copy_file, copy_tree

    saved = []
    for shared in SHARED_FILES:
        old = model_dir / shared
        check_not_link(old)
        if old.is_dir():
            copy_tree(old, into / shared, into)
        elif old.is_file():
            copy_file(old, into / shared, into)
        else:
            continue
        saved.append(shared)
    return saved


def publish_model(staged: Path, model_dir: Path, version: int) -> None:
    """Add a model folder built by write_model_folder to a repository, in the order that keeps what Triton
    polls loadable: the shared files first, then the version folder, renamed into place in one step (built
    under a dot name, which Triton skips as not a version number). Other models and versions are never touched;
    a drift baseline of an earlier version is removed when this one ships none (the run's output kept it)."""
    import os
    import secrets
    import shutil

    from modelforge.safe_files import check_not_link, copy_file, copy_tree, make_dirs

    repository = model_dir.parent
    check_not_link(repository)
    make_dirs(repository, repository.parent)
    check_not_link(model_dir)
    target = model_dir / str(version)
    if target.exists() or target.is_symlink():
        raise PassError("export", f"version folder {target} appeared while the run worked")
    make_dirs(model_dir, repository)
    partial = model_dir / f".{version}.partial-{secrets.token_hex(4)}"
    try:
        copy_tree(staged / str(version), partial, repository)
        for shared in SHARED_FILES:
            source = staged / shared
            if source.is_dir():
                copy_tree(source, model_dir / shared, repository)
            elif source.is_file():
                copy_file(source, model_dir / shared, repository)
        if not (staged / "baseline_stats.json").exists():
            stale = model_dir / "baseline_stats.json"
            check_not_link(stale)
            stale.unlink(missing_ok=True)
        os.rename(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def is_repository(folder: Path) -> bool:
    """A folder holding at least one `<model>/config.pbtxt`: a Triton model repository."""
    return folder.is_dir() and any((p / "config.pbtxt").is_file() for p in folder.iterdir() if p.is_dir())


def refuse_repository_as_output(out: Path) -> None:
    """-o names the run's own folder (reports, manifest): a Triton repository there would get them at its root,
    and --force would move the whole repository aside. Name it with --repository instead."""
    if is_repository(out):
        raise InputError(
            f"output {out} is a Triton model repository: the run's reports would land at its root",
            hint=f"add to it with --repository {out} and give the run its own folder with -o",
        )
