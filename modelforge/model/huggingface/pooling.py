"""The sentence embedding of a feature-extraction folder: the folder's own pooling and normalisation.

A sentence-transformers folder states them in `modules.json` (Transformer, Pooling, optionally Normalize) and
`1_Pooling/config.json`; the ONNX form computes the same `sentence_embedding` [N, D] a user gets from
`SentenceTransformer(folder).encode(...)`, so quantization is judged on what is served. Only the fixed layout is
read (the Transformer at the folder's top, pooling in 1_Pooling/): a path in modules.json never chooses a file.
A plain encoder folder without modules.json gets mean pooling, unnormalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelforge.errors import InputError

POOLING_MODES = ("mean", "cls", "max")
ST_MODULE = "sentence_transformers.models."
# modules.json type -> the one path that module may have in the layout modelforge reads
MODULE_PATHS = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize"}
OUTPUT_NAME = "sentence_embedding"


@dataclass(frozen=True)
class PoolingSpec:
    mode: str  # one of POOLING_MODES
    normalize: bool
    source: str  # where it was read from, for the conversion record


def read_pooling(folder: Path) -> PoolingSpec:
    """The folder's pooling and normalisation; exit 2 for a layout or mode the ONNX form cannot reproduce."""
    from modelforge.model.huggingface.folder import read_json

    if not (folder / "modules.json").exists():
        return PoolingSpec("mean", False, "default (no modules.json)")
    modules = read_json(folder / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise InputError(f"{folder / 'modules.json'}: expected a list of modules")
    kinds = []
    for module in modules:
        kind = str(module.get("type", ""))
        name = kind.removeprefix(ST_MODULE)
        if not kind.startswith(ST_MODULE) or name not in MODULE_PATHS:
            raise InputError(
                f"{folder / 'modules.json'}: module {kind!r} is not supported (supported: "
                f"{', '.join(MODULE_PATHS)}); its output would differ from the exported embedding"
            )
        if module.get("path", "") != MODULE_PATHS[name]:
            raise InputError(
                f"{folder / 'modules.json'}: {name} at path {module.get('path')!r}; expected "
                f"{MODULE_PATHS[name]!r} (the layout sentence-transformers saves)"
            )
        kinds.append(name)
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise InputError(f"{folder / 'modules.json'}: expected Transformer, Pooling[, Normalize]; got {kinds}")
    config = read_json(folder / "1_Pooling" / "config.json", "1_Pooling/config.json")
    mode = _mode(folder, config)
    return PoolingSpec(mode, "Normalize" in kinds, "modules.json + 1_Pooling/config.json")


def _mode(folder: Path, config: Any) -> str:
    if not isinstance(config, dict):
        raise InputError(f"{folder / '1_Pooling' / 'config.json'}: expected a JSON object")
    on = [key for key, value in config.items() if key.startswith("pooling_mode_") and value is True]
    names = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}
    if len(on) != 1 or on[0] not in names:
        raise InputError(
            f"{folder / '1_Pooling' / 'config.json'}: pooling {on or 'none'} is not supported "
            f"(exactly one of {', '.join(names)})"
        )
    return names[on[0]]


def embedding_model(model: Any, spec: PoolingSpec) -> Any:
    """A torch module: token inputs in, the pooled (and normalised) `sentence_embedding` [N, D] out."""
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.config = model.config

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            states = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)[0]
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            if spec.mode == "cls":
                pooled = states[:, 0]
            elif spec.mode == "max":
                pooled = states.masked_fill(mask == 0, torch.finfo(states.dtype).min).max(dim=1).values
            else:
                pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if spec.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    return SentenceEmbedding().eval()
