"""Stage cache: a pass's result stored under a key made of everything that can change it.

The key hashes the *content* of the input model (and its external data), the pass name and config,
the content of the data the pass reads, the seed, and the tool and library versions: the same file
name with different bytes is always a miss. Entries are written to a temporary folder and renamed
into place, so a crash never leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from modelforge.artifact import ModelArtifact
from modelforge.machine import package_versions

ENTRY_FILE = "entry.json"


@functools.cache
def code_digest() -> str:
    """Hash of modelforge's own source: a fix in a pass invalidates what the old code cached."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for file in sorted(package.rglob("*.py")):
        digest.update(file.relative_to(package).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def cache_root() -> Path:
    if os.environ.get("MODELFORGE_CACHE_DIR"):
        return Path(os.environ["MODELFORGE_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "modelforge" / "stages"


def artifact_digest(artifact: ModelArtifact) -> str:
    from modelforge.manifest import file_sha256

    digest = hashlib.sha256()
    for file in artifact.files():
        digest.update(file.name.encode() + b"\0" + file_sha256(file).encode())
    return digest.hexdigest()


def stage_key(artifact: ModelArtifact, pass_name: str, config: dict[str, Any], data: str | None, seed: int) -> str:
    payload = {
        "model": artifact_digest(artifact),
        "format": artifact.format,
        "pass": pass_name,
        "config": config,
        "data": data,
        "seed": seed,
        "versions": package_versions(),
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def lookup(key: str, into: Path) -> tuple[ModelArtifact, dict[str, Any]] | None:
    """Copy a cached stage result into `into`; None on a miss (an unreadable or damaged entry is a miss too)."""
    entry = cache_root() / key
    meta_file = entry / ENTRY_FILE
    from modelforge.errors import InputError

    try:
        if not meta_file.is_file():
            return None
        meta = json.loads(meta_file.read_text())
        for name in meta["files"]:
            shutil.copyfile(entry / name, into / name)
        path = into / meta["model"]
        if meta["format"] == "onnx":
            from modelforge.onnx_model import onnx_artifact

            artifact = onnx_artifact(path)
            artifact.metadata.update(meta.get("serving", {}))  # runtime/precision a target pass labelled it with
            return artifact, dict(meta["metrics"])
        return ModelArtifact(path, meta["format"]), dict(meta["metrics"])
    except (OSError, ValueError, KeyError, TypeError, InputError):
        return None


def store(key: str, artifact: ModelArtifact, metrics: dict[str, Any]) -> None:
    root = cache_root()
    try:  # caching is optional: a cache folder that cannot be written never fails the run
        root.mkdir(parents=True, exist_ok=True)
        if (root / key / ENTRY_FILE).is_file():
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=root))
    except OSError:
        return
    try:
        files = artifact.files()
        for file in files:
            shutil.copyfile(file, staging / file.name)
        meta = {
            "model": artifact.path.name,
            "format": artifact.format,
            "files": [f.name for f in files],
            "metrics": metrics,
            "serving": {k: artifact.metadata[k] for k in ("runtime", "runtime_precision") if k in artifact.metadata},
        }
        (staging / ENTRY_FILE).write_text(json.dumps(meta, indent=2, default=str))
        staging.rename(root / key)
    except OSError:  # another process stored the same key first, or the disk is full: caching is optional
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def info() -> dict[str, Any]:
    root = cache_root()
    entries = [p for p in root.iterdir() if (p / ENTRY_FILE).is_file()] if root.is_dir() else []
    size = sum(f.stat().st_size for e in entries for f in e.iterdir() if f.is_file())
    return {"path": str(root), "entries": len(entries), "size_bytes": size}


def clear() -> int:
    root = cache_root()
    count = info()["entries"]
    if root.is_dir():
        shutil.rmtree(root)
    return count
