"""Loading a checked Hugging Face folder with transformers, from the folder alone.

The environment is set before transformers is imported: no hub access ever (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE,
`local_files_only=True`), so a missing file is an exit-2 error naming it, never a download; no TensorFlow import
(USE_TF=0); safetensors only (`use_safetensors=True`); the folder's own Python code only with --trust-remote-code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.errors import InputError, first_line
from modelforge.model.artifact import ModelArtifact
from modelforge.model.huggingface.info import HFInfo
from modelforge.model.huggingface.offline import import_transformers
from modelforge.model.huggingface.preprocess import load_tokenizer

# Sequences are padded and truncated to the tokenizer's model_max_length, capped here (an unset one is 1e30).
MAX_LENGTH_CAP = 512
# The order of text inputs in the ONNX model (optimum's order; the torch exporter uses the same).
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# task -> the transformers Auto class that loads it: a fixed table, never a class named by the folder.
AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "feature-extraction": "AutoModel",
    "image-classification": "AutoModelForImageClassification",
}


def load_error(folder: Path, exc: Exception) -> InputError:
    """What transformers raised on a folder we checked, as one line naming the folder."""
    return InputError(f"model folder {folder}: transformers cannot load it ({first_line(exc)})")


def text_input_names(tokenizer: Any) -> tuple[str, ...]:
    """The model inputs the tokenizer makes, in the ONNX order (optimum's)."""
    made = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    return tuple(n for n in TEXT_INPUTS if n in made) + tuple(n for n in made if n not in TEXT_INPUTS)


def max_length(tokenizer: Any, config: dict[str, Any]) -> int:
    """model_max_length, capped by MAX_LENGTH_CAP and the model's position table."""
    length = int(min(getattr(tokenizer, "model_max_length", MAX_LENGTH_CAP) or MAX_LENGTH_CAP, MAX_LENGTH_CAP))
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        length = min(length, positions)
    return length


def inspect_folder(folder: Path, task: str | None = None, trust_remote_code: bool = False) -> HFInfo:
    """Check the folder (exit 2 on anything wrong), choose its task, read what the pipeline needs to know."""
    from modelforge.model.huggingface.folder import check_folder, check_preprocessor
    from modelforge.model.huggingface.task import resolve_task

    config = check_folder(folder, trust_remote_code)
    chosen = resolve_task(folder, config, task)
    check_preprocessor(folder, chosen)
    if chosen == "feature-extraction":
        from modelforge.model.huggingface.pooling import read_pooling

        read_pooling(folder)  # an unsupported sentence-transformers layout is refused now, not at export
    id2label: dict[int, str] = {}
    if chosen != "feature-extraction":
        raw = config.get("id2label")
        if not isinstance(raw, dict) or not raw:
            raise InputError(f"{folder / 'config.json'}: a {chosen} model needs id2label (its class names)")
        try:
            id2label = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise InputError(f"{folder / 'config.json'}: id2label keys must be class ids (0, 1, ...)") from None
    if chosen == "image-classification":
        names, length = ("pixel_values",), None
    else:
        tokenizer = load_tokenizer(folder, trust_remote_code)
        names, length = text_input_names(tokenizer), max_length(tokenizer, config)
    return HFInfo(folder, chosen, config["model_type"], id2label, names, length)


def hf_artifact(folder: Path, task: str | None = None, trust_remote_code: bool = False) -> ModelArtifact:
    """The artifact of a Hugging Face folder (format "huggingface"), checked, nothing loaded but the tokenizer."""
    return ModelArtifact(path=folder, format="huggingface", huggingface=inspect_folder(folder, task, trust_remote_code))


def load_hf_model(info: HFInfo, trust_remote_code: bool = False, folder: Path | None = None) -> Any:
    """The folder's PyTorch model for its task, in eval mode. `folder`: load these weights instead (a pruned or
    distilled form of the same model, written by modelforge)."""
    transformers = import_transformers()
    auto = getattr(transformers, AUTO_CLASSES[info.task])
    source = folder or info.folder
    try:
        from modelforge.quiet import quiet

        with quiet():
            model = auto.from_pretrained(
                str(source), local_files_only=True, use_safetensors=True, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError, KeyError, TypeError, ImportError, RuntimeError) as exc:
        raise load_error(source, exc) from None
    return model.eval()
