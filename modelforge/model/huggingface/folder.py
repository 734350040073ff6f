"""Recognise and validate a local Hugging Face folder before anything loads it.

A folder is a user's input and untrusted: its files are checked by name only, here, so every bad folder is one
exit-2 line naming the file, never a traceback from deep inside transformers, a download attempt or unpickling.
What config.json says never chooses a path or code: the files read are fixed names in the folder, pickled weights
(`pytorch_model.bin`) are refused as `.pt` files are, and a config that asks for the folder's own Python code
(`auto_map`, or a model_type transformers does not know) loads only with `--trust-remote-code`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from modelforge.errors import InputError
from modelforge.safe_files import link_refused

CONFIG = "config.json"
# The files an output Hugging Face folder gets from the input one, byte for byte: a fixed list, so nothing in the
# folder chooses what is copied (regular files only; a link is refused).
COMPANION_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "added_tokens.json",
    "preprocessor_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
# Any one of these makes a tokenizer transformers can load (tokenizer_config.json alone does not).
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
IMAGE_PROCESSOR = "preprocessor_config.json"
# Pickled weight files: unpickling runs code, so they are never read.
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# JSON files read here are small; a bigger one is not a config (and would only cost memory).
MAX_JSON_BYTES = 16 << 20
SAFETENSORS_HINT = (
    "save the model with model.save_pretrained(folder, safe_serialization=True), or convert the .bin with "
    "safetensors' convert script; modelforge never unpickles weights"
)


def is_hf_folder(path: Path) -> bool:
    """A folder with a config.json (a link named config.json counts too: it is refused when checked)."""
    return path.is_dir() and ((path / CONFIG).is_file() or (path / CONFIG).is_symlink())


def read_json(path: Path, what: str = "") -> Any:
    """A JSON file of the folder: a regular file (never through a link), bounded in size, valid JSON."""
    label = what or path.name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"model folder {path.parent}: no {label}") from None
    if stat.S_ISLNK(info.st_mode):
        raise link_refused(path)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file")
    if info.st_size > MAX_JSON_BYTES:
        raise InputError(f"{path}: {info.st_size} bytes, too big for a {label} (at most {MAX_JSON_BYTES})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def read_config(folder: Path) -> dict[str, Any]:
    config = read_json(folder / CONFIG, CONFIG)
    if not isinstance(config, dict):
        raise InputError(f"{folder / CONFIG}: expected a JSON object, got {type(config).__name__}")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise InputError(f'{folder / CONFIG}: no model_type (expected e.g. "bert" or "vit")')
    return config


def check_no_links(folder: Path) -> None:
    """Refuse a folder holding links (at its top and in its sentence-transformers sub-folders): transformers
    would read whatever they point at, and a copy would carry them into the output."""
    for here in (folder, folder / "1_Pooling", folder / "2_Normalize"):
        if here.is_symlink():
            raise link_refused(here)
        if not here.is_dir():
            continue
        for entry in sorted(here.iterdir()):
            if entry.is_symlink():
                raise InputError(
                    f"{entry} is a symbolic link: modelforge never reads model files through links",
                    hint="copy the folder with real files (e.g. huggingface-cli download --local-dir DIR)",
                )


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors weights (one file, or the shards an index names by the fixed HF pattern)."""
    return sorted(p for p in folder.glob("*.safetensors") if p.is_file())


SHARD_INDEX = "model.safetensors.index.json"


def check_shard_index(folder: Path) -> None:
    """A sharded checkpoint's index names its shard files, and transformers opens them by those names: each must
    be a plain file name of a safetensors file in the folder (never a path out of it)."""
    index = read_json(folder / SHARD_INDEX)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise InputError(f"{folder / SHARD_INDEX}: no weight_map")
    for name in sorted({str(v) for v in weight_map.values()}):
        plain = name == Path(name).name and name not in ("", ".", "..") and "\\" not in name
        if not plain or not name.endswith(".safetensors"):
            raise InputError(f"{folder / SHARD_INDEX}: shard {name!r} is not a .safetensors file name in the folder")
        if not (folder / name).is_file() or (folder / name).is_symlink():
            raise InputError(f"{folder / SHARD_INDEX}: shard {name} is missing from the folder")


def check_weights(folder: Path) -> None:
    if (folder / SHARD_INDEX).exists() or (folder / SHARD_INDEX).is_symlink():
        check_shard_index(folder)
    if weight_files(folder):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLED_WEIGHTS and p.is_file())
    if pickled:
        raise InputError(
            f"model folder {folder}: weights only in {pickled[0]}, a pickle, which is never unpickled",
            hint=SAFETENSORS_HINT,
        )
    others = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".h5", ".msgpack", ".onnx"))
    found = f" (found {', '.join(others)}: TensorFlow/Flax/ONNX weights are not read from a folder)" if others else ""
    raise InputError(f"model folder {folder}: no model.safetensors{found}", hint=SAFETENSORS_HINT)


def remote_code_files(folder: Path, config: dict[str, Any]) -> list[str]:
    """The files whose `auto_map` asks transformers to import Python code shipped in the folder."""
    asking = [CONFIG] if "auto_map" in config else []
    for name in ("tokenizer_config.json", IMAGE_PROCESSOR):
        if (folder / name).exists() or (folder / name).is_symlink():
            data = read_json(folder / name)
            if isinstance(data, dict) and "auto_map" in data:
                asking.append(name)
    return asking


def known_model_type(model_type: str) -> bool:
    """Whether the installed transformers has this model_type built in (its own code, not the folder's)."""
    from modelforge.model.huggingface.offline import import_transformers

    import_transformers()
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


def check_remote_code(folder: Path, config: dict[str, Any], trust_remote_code: bool) -> None:
    """Code from the folder runs only when the person at the command line said --trust-remote-code."""
    if trust_remote_code:
        return
    asking = remote_code_files(folder, config)
    if asking:
        raise InputError(
            f"model folder {folder}: {asking[0]} names Python code in the folder (auto_map), which runs when it "
            "loads; refused unless you pass --trust-remote-code",
        )
    if not known_model_type(config["model_type"]):
        raise InputError(
            f"model folder {folder}: {CONFIG} model_type {config['model_type']!r} is not built into the installed "
            "transformers; its code would come from the folder: refused unless you pass --trust-remote-code",
            hint="or upgrade transformers if it is a newer built-in architecture",
        )


def check_preprocessor(folder: Path, task: str) -> None:
    """Text tasks need the folder's tokenizer, image tasks its image processor: data is prepared by them."""
    if task == "image-classification":
        if not (folder / IMAGE_PROCESSOR).is_file():
            raise InputError(f"model folder {folder}: no {IMAGE_PROCESSOR} (the image processor)")
        read_json(folder / IMAGE_PROCESSOR)
        return
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"model folder {folder}: no tokenizer (expected tokenizer.json, or vocab.txt / vocab.json / spiece.model "
            "with tokenizer_config.json)"
        )
    if (folder / "tokenizer_config.json").exists():
        read_json(folder / "tokenizer_config.json")


def check_folder(folder: Path, trust_remote_code: bool = False) -> dict[str, Any]:
    """Everything that can be checked without loading: links, config.json, weights, remote code. Returns the
    parsed config (the task is chosen from it next, then `check_preprocessor`)."""
    check_no_links(folder)
    config = read_config(folder)
    check_weights(folder)
    check_remote_code(folder, config, trust_remote_code)
    return config
