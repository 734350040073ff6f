"""The optional dependencies: one table of what each is, which extra installs it, and one gate to import them.

Frameworks are imported inside the functions that use them (`modelforge --help` stays fast), through `require`,
so a missing extra is always the same one-line error naming the `pip install 'modelforge[EXTRA]'` to run.
`modelforge doctor` lists what is installed from the same table. Modelled on Polygraphy's `lazy_import`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.util import find_spec
from types import ModuleType

from modelforge.errors import MissingExtraError


@dataclass(frozen=True)
class OptionalModule:
    """One importable module behind an extra: the distribution the error names, the extra, what it is for."""

    package: str  # what `pip` calls it and the error says is missing (h5py: the tensorflow that brings it)
    extra: str  # `pip install 'modelforge[EXTRA]'`
    purpose: str


# import name -> where it comes from; doctor lists the extras in this order
OPTIONAL: dict[str, OptionalModule] = {
    "torch": OptionalModule("torch", "torch", "PyTorch models, pruning, distillation, TensorRT device memory"),
    "onnxscript": OptionalModule("onnxscript", "torch", "torch.onnx's exporter (PyTorch to ONNX)"),
    "torch_pruning": OptionalModule("torch-pruning", "torch", "structured pruning of PyTorch models"),
    "safetensors": OptionalModule("safetensors", "torch", "reading --weights .safetensors files"),
    "tensorflow": OptionalModule("tensorflow", "tf", "Keras and SavedModel models"),
    "h5py": OptionalModule("tensorflow", "tf", "reading .h5 Keras files (h5py comes with TensorFlow)"),
    "tf_keras": OptionalModule("tf-keras", "tf", "Keras 2 models, what TF-MOT prunes"),
    "tensorflow_model_optimization": OptionalModule(
        "tensorflow-model-optimization", "tf", "pruning Keras models (TF-MOT)"
    ),
    "tf2onnx": OptionalModule("tf2onnx", "tf", "converting TensorFlow models to ONNX"),
    "ai_edge_litert": OptionalModule("ai-edge-litert", "tf", "running .tflite models (LiteRT)"),
    "transformers": OptionalModule("transformers", "hf", "Hugging Face model folders"),
    "optimum": OptionalModule("optimum-onnx", "hf", "optimum's ONNX exporter for Hugging Face folders"),
    "onnxruntime_genai": OptionalModule(
        "onnxruntime-genai", "llm", "language models: ONNX export with a KV cache, generation speed"
    ),
    "optimum.intel": OptionalModule(
        "optimum-intel", "llm-openvino", "language models on OpenVINO: the stateful export with a KV cache"
    ),
    "openvino_tokenizers": OptionalModule(
        "openvino-tokenizers", "llm-openvino", "language models on OpenVINO: the tokenizer as an IR"
    ),
    "openvino_genai": OptionalModule(
        "openvino-genai", "llm-openvino", "language models on OpenVINO: generation and its tokens/s"
    ),
    "tensorrt": OptionalModule("tensorrt", "tensorrt", "building and running TensorRT engines"),
    "openvino": OptionalModule("openvino", "openvino", "the OpenVINO runtime and IR files"),
    "nncf": OptionalModule("nncf", "openvino", "NNCF's INT8 quantization of OpenVINO models (quantize --scheme nncf)"),
    "tritonclient": OptionalModule("tritonclient", "triton", "checking Triton model configs"),
    "ray": OptionalModule("ray", "search", "modelforge optimize's fine-tuning trials (Ray Tune, ASHA)"),
}


def _entry(module: str) -> OptionalModule:
    """The table row of `module` or of the package it lives in (`ai_edge_litert.interpreter`)."""
    return OPTIONAL.get(module) or OPTIONAL[module.partition(".")[0]]


def missing(module: str, purpose: str) -> MissingExtraError:
    """The one-line error for `purpose` needing `module`, which is not installed."""
    entry = _entry(module)
    return MissingExtraError(entry.package, entry.extra, purpose)


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` (dotted names too), or raise the one-line error naming the extra that installs it.

    Any ImportError counts as missing: a half-installed framework fails the same way, before any work."""
    _entry(module)  # a name missing from the table is a programming error: KeyError, before importing
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(module, purpose) from None


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (fast enough for --help and doctor)."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module blocked with sys.modules[name] = None
        return False


def extras() -> dict[str, list[str]]:
    """extra -> the distributions it installs that modelforge imports, in table order (for doctor)."""
    grouped: dict[str, list[str]] = {}
    for entry in OPTIONAL.values():
        packages = grouped.setdefault(entry.extra, [])
        if entry.package not in packages:
            packages.append(entry.package)
    return grouped
