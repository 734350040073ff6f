"""Hugging Face folder to ONNX: optimum's exporter where it supports the model, else torch.onnx; checked numerically.

optimum-onnx knows each architecture's inputs, dynamic axes and export patches (its per-architecture OnnxConfig),
so it is preferred (`exporter: auto`); a model or task it does not support goes through `torch.onnx.export` with
inputs the folder's tokenizer builds. Either way batch and sequence axes are dynamic, and the ONNX form is run
against the PyTorch model on real inputs (the run's data, else tokenizer-built probes of another length than the
export's example): max abs diff and cosine go into the convert stage record, and beyond tolerance it is exit 3.

A feature-extraction folder is exported with its pooling and normalisation (`sentence_embedding` [N, D]).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.convert.check import CHECK_SAMPLES, check_agreement
from modelforge.errors import InputError, PassError, first_line
from modelforge.model.artifact import ModelArtifact
from modelforge.model.huggingface.info import HFInfo
from modelforge.optional import installed
from modelforge.quiet import quiet

EXPORTERS = ("auto", "optimum", "torch")
# Texts of several lengths: the check runs the ONNX form on other shapes than the export traced with.
PROBE_TEXTS = (
    "modelforge checks the exported model against the original one.",
    "a short probe",
    "A longer probe sentence, with punctuation, numbers like 12 and 3456, and words the vocabulary may split.",
    "hello",
)
HINT = "rerun with --exporter torch (or optimum), or MODELFORGE_DEBUG=1 for the exporter's traceback"


def output_names(task: str) -> tuple[str, ...]:
    return ("sentence_embedding",) if task == "feature-extraction" else ("logits",)


def dynamic_axes(info: HFInfo) -> dict[str, dict[int, str]]:
    """Batch (and sequence) axes of every input and output, named as optimum names them."""
    axes: dict[str, dict[int, str]] = {}
    for name in info.input_names:
        axes[name] = {0: "batch_size"} if name == "pixel_values" else {0: "batch_size", 1: "sequence_length"}
    for name in output_names(info.task):
        token = info.task == "token-classification"
        axes[name] = {0: "batch_size", 1: "sequence_length"} if token else {0: "batch_size"}
    return axes


def export_module(model: Any, info: HFInfo) -> tuple[Any, str]:
    """The torch module whose ONNX form is served: logits for the classifiers, the pooled embedding otherwise."""
    import torch

    if info.task == "feature-extraction":
        from modelforge.model.huggingface.pooling import embedding_model, read_pooling

        spec = read_pooling(info.folder)
        pooled = f"{spec.mode} pooling{', normalized' if spec.normalize else ''} ({spec.source})"
        return embedding_model(model, spec), pooled
    if info.task == "image-classification":

        class ImageLogits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model, self.config = model, model.config

            def forward(self, pixel_values):
                return self.model(pixel_values=pixel_values).logits

        return ImageLogits().eval(), ""

    class TextLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.config = model, model.config

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return TextLogits().eval(), ""


def probe_feeds(info: HFInfo, model: Any, examples: dict[str, np.ndarray] | None) -> tuple[dict, str]:
    """Up to CHECK_SAMPLES samples of every input: the run's data when it holds them all, else probes built by
    the folder's tokenizer (or seeded noise images of the model's size)."""
    arrays = examples or {}
    if arrays and all(name in arrays for name in info.input_names):
        dtype = np.float32 if info.task == "image-classification" else np.int64
        return {n: np.asarray(arrays[n], dtype=dtype)[:CHECK_SAMPLES] for n in info.input_names}, "data"
    if info.task == "image-classification":
        size, channels = model.config.image_size, model.config.num_channels
        size = (size, size) if isinstance(size, int) else tuple(size)
        noise = np.random.default_rng(0).standard_normal((4, channels, *size)).astype(np.float32)
        return {"pixel_values": noise}, "seeded noise images (no data given)"
    from modelforge.model.huggingface.preprocess import load_tokenizer

    tokenizer = load_tokenizer(info.folder)
    encoded = tokenizer(list(PROBE_TEXTS), padding=True, truncation=True, max_length=info.max_length)
    feeds = {n: np.asarray(encoded[n], dtype=np.int64) for n in info.input_names}
    return feeds, "tokenizer-built probe texts (no data given)"


def choose_exporter(requested: str, info: HFInfo, model: Any) -> str:
    """`auto`: optimum where it is installed and supports the architecture and task, else torch."""
    if requested not in EXPORTERS:
        raise InputError(f"exporter {requested!r}: expected one of {', '.join(EXPORTERS)}")
    if requested == "torch":
        return "torch"
    why = _optimum_unsupported(info, model)
    if why is None:
        return "optimum"
    if requested == "optimum":
        raise InputError(f"model folder {info.folder}: --exporter optimum: {why}", hint="use --exporter torch")
    return "torch"


def _optimum_unsupported(info: HFInfo, model: Any) -> str | None:
    if not installed("optimum.exporters.onnx"):
        return "optimum-onnx is not installed (pip install optimum-onnx)"
    try:
        _optimum_config(info, model)
    except Exception as exc:  # optimum raises KeyError/ValueError/its own errors for what it does not support
        return f"optimum does not export {info.model_type} for {info.task} ({first_line(exc, 160)})"
    return None


def _optimum_config(info: HFInfo, model: Any) -> Any:
    """optimum's OnnxConfig of the architecture for the task; for embeddings, with the pooled output."""
    with quiet():
        import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the per-architecture configs)
        from optimum.exporters.tasks import TasksManager

        constructor = TasksManager.get_exporter_config_constructor(
            exporter="onnx", model=model, task=info.task, library_name="transformers"
        )
        config = constructor(model.config)
    if info.task != "feature-extraction":
        return config

    class PooledConfig(type(config)):
        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            return {"sentence_embedding": {0: "batch_size"}}

    return PooledConfig(model.config, task="feature-extraction")


def _export_optimum(module: Any, model: Any, info: HFInfo, exported: Path, opset: int) -> str:
    from optimum.exporters.onnx.convert import export
    from optimum.version import __version__

    config = _optimum_config(info, model)
    opset = max(opset, config.DEFAULT_ONNX_OPSET)
    # The transformers model itself where optimum's config describes its outputs (logits); the pooled wrapper
    # for embeddings, whose one output PooledConfig names.
    export(module if info.task == "feature-extraction" else model, config, exported, opset=opset)
    named = type(config).__bases__[0] if info.task == "feature-extraction" else type(config)  # not PooledConfig
    return f"optimum {__version__} ({named.__name__})"


def _export_torch(torch: Any, module: Any, info: HFInfo, exported: Path, opset: int, feeds: dict) -> str:
    """torch.onnx's TorchScript exporter (what optimum drives too), named inputs, dynamic batch/sequence axes."""
    example = {n: torch.from_numpy(v[:2]) for n, v in feeds.items()}
    torch.onnx.export(
        module,
        (example,),
        str(exported),
        input_names=list(info.input_names),
        output_names=list(output_names(info.task)),
        dynamic_axes=dynamic_axes(info),
        opset_version=opset,
        dynamo=False,
    )
    return f"torch.onnx (TorchScript) from transformers {type(module.model).__name__}"


def check_hf_conversion(module: Any, onnx_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Run the PyTorch module and its ONNX form on the same inputs; beyond tolerance a PassError (exit 3)."""
    import torch

    from modelforge.runtimes.onnxruntime import create_session

    with torch.no_grad():
        reference = module(**{n: torch.from_numpy(v) for n, v in feeds.items()})
    session = create_session(onnx_path, threads=1, stage="convert")
    wanted = {i.name for i in session.get_inputs()}
    converted = session.run(None, {n: v for n, v in feeds.items() if n in wanted})[:1]
    hint = "the exported graph computes something else than the PyTorch model; " + HINT
    return check_agreement([reference.numpy()], converted, "PyTorch", hint)


def hf_to_onnx(
    artifact: ModelArtifact,
    workdir: Path,
    opset: int,
    examples: dict[str, np.ndarray] | None = None,
    exporter: str = "auto",
    trust_remote_code: bool = False,
) -> tuple[ModelArtifact, dict[str, Any]]:
    """Export a `huggingface` artifact (the folder, or a pruned/distilled form of it) to `workdir/model.onnx`."""
    from modelforge.model.huggingface.load import load_hf_model
    from modelforge.model.onnx_model import load_onnx, onnx_artifact, opset_version, save_onnx
    from modelforge.model.torch.safe_load import import_torch

    torch = import_torch()
    info = artifact.huggingface
    model = load_hf_model(info, trust_remote_code, folder=artifact.path)
    module, pooling = export_module(model, info)
    chosen = choose_exporter(exporter, info, model)
    feeds, source = probe_feeds(info, model, examples)
    exported = workdir / "export" / "model.onnx"
    exported.parent.mkdir(parents=True, exist_ok=True)
    try:
        with quiet(), torch.no_grad():
            if chosen == "optimum":
                used = _export_optimum(module, model, info, exported, opset)
            else:
                used = _export_torch(torch, module, info, exported, opset, feeds)
    except (InputError, PassError):
        raise
    except Exception as exc:  # exporters raise whatever tracing raises
        raise PassError(
            "convert", f"{chosen} export of {info.model_type} failed: {first_line(exc)}", hint=HINT
        ) from exc
    target = workdir / "model.onnx"
    proto = load_onnx(exported)
    produced = opset_version(proto)
    save_onnx(proto, target)  # one file where it fits (the exporter may write external data beside it)
    check = check_hf_conversion(module, target, feeds)
    record = {
        "exporter": used,
        "exporter_requested": exporter,
        "task": info.task,
        "opset_requested": opset,
        "opset": produced,
        "check": check | {"samples": len(next(iter(feeds.values()))), "samples_from": source},
    }
    if pooling:
        record["pooling"] = pooling
    return replace(onnx_artifact(target), huggingface=info), record
