"""HFInfo: what modelforge learned about a Hugging Face folder, carried on every artifact derived from it.

The output writer reads it to write a Hugging Face folder again (companion files from `folder`), and the
evaluator reads `task` to choose metrics. Only modelforge's own code builds it, after validating the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HFInfo:
    folder: Path  # the original folder (companion files are copied from here)
    task: str  # "text-classification" | "token-classification" | "feature-extraction" | "image-classification"
    model_type: str  # config.json model_type, e.g. "bert", "vit"
    id2label: dict[int, str]  # empty for feature-extraction
    input_names: tuple[str, ...]  # ONNX/model inputs, e.g. ("input_ids", "attention_mask", "token_type_ids")
    max_length: int | None  # the tokenizer's model_max_length capped (512), None for images
