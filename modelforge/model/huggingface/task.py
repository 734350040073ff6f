"""Which task a Hugging Face folder is for: from `--task`, else from config.json's `architectures` and the
folder's sentence-transformers files.

The task chooses the transformers Auto class (a fixed table here, never a class name read from the folder), the
data preparation, the ONNX outputs and the metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.errors import InputError

TASKS = ("text-classification", "token-classification", "feature-extraction", "image-classification")
# architecture name suffix -> task
HEADS = {
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForImageClassification": "image-classification",
}
SUPPORTED = (
    f"supported tasks: {', '.join(TASKS)} (architectures *ForSequenceClassification, *ForTokenClassification, "
    "*ForImageClassification, or a plain *Model / sentence-transformers folder for feature-extraction); "
    "decoder language models (*ForCausalLM): text-generation, with modelforge quantize --weights int4|int8"
)


def _architecture(config: dict[str, Any]) -> str | None:
    names = config.get("architectures")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0]
    return None


def task_from_config(folder: Path, config: dict[str, Any]) -> str | None:
    """The task the folder's files say, or None when they say none modelforge supports."""
    if (folder / "modules.json").is_file():  # a sentence-transformers folder: its embedding is the output
        return "feature-extraction"
    arch = _architecture(config)
    if arch is None:
        return None
    for suffix, task in HEADS.items():
        if arch.endswith(suffix):
            return task
    if arch.endswith("Model") and not arch.endswith("PreTrainedModel"):
        return "feature-extraction"
    return None


def resolve_task(folder: Path, config: dict[str, Any], task: str | None) -> str:
    """`--task` (checked against what the folder holds), else the folder's own task; exit 2 otherwise."""
    found = task_from_config(folder, config)
    if task is None:
        if found is None:
            arch = _architecture(config)
            said = f"architecture {arch!r}" if arch else "no architectures"
            raise InputError(f"model folder {folder}: config.json has {said}, no task modelforge supports; {SUPPORTED}")
        return found
    if task not in TASKS:
        raise InputError(f"--task {task!r}: unknown; {SUPPORTED}")
    if task == found or task == "feature-extraction":  # any encoder's base model gives an embedding
        return task
    arch = _architecture(config)
    if found is not None or arch is None:
        # A classification head the weights do not hold would be initialised at random: never a silent guess.
        held = f"a {found} model ({arch})" if arch else "no architectures"
        raise InputError(f"model folder {folder}: --task {task}, but config.json names {held}; {SUPPORTED}")
    raise InputError(f"model folder {folder}: architecture {arch!r} is not supported for --task {task}; {SUPPORTED}")


# Decoder language models (weight-only quantization): architectures onnxruntime-genai's model builder exports
# with a KV cache. A fixed table: config.json's name is compared with it, never used to pick code.
CAUSAL_LM_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "PhiForCausalLM",
    "Phi3ForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "GraniteForCausalLM",
    "OlmoForCausalLM",
    "NemotronForCausalLM",
    "SmolLM3ForCausalLM",
    "InternLM2ForCausalLM",
)


def is_causal_lm(config: dict[str, Any]) -> bool:
    """config.json names a decoder language model (*ForCausalLM): task text-generation."""
    arch = _architecture(config)
    return arch is not None and arch.endswith("ForCausalLM")


def check_causal_lm_architecture(folder: Path, config: dict[str, Any]) -> str:
    """The architecture, when the exporter supports it; exit 2 naming the supported ones otherwise."""
    arch = _architecture(config) or "none"
    if arch not in CAUSAL_LM_ARCHITECTURES:
        raise InputError(
            f"model folder {folder}: architecture {arch!r} cannot be exported with a KV cache; supported language "
            f"models: {', '.join(CAUSAL_LM_ARCHITECTURES)}"
        )
    return arch
