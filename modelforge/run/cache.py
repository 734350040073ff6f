"""Stage cache: a pass's result stored under a key made of everything that can change it.

The key hashes the *content* of the input model (and its external data), the pass name and config,
the content of the data the pass reads, the seed, and the tool and library versions: the same file
name with different bytes is always a miss. Entries are written to a temporary folder and renamed
into place, so a crash never leaves a half-written entry that a later run would trust.

A cache folder may be shared or tampered with, so an entry is untrusted input: each file's sha256 and size are
recorded on store and checked on lookup, file names are plain names read without following links, and only
modelforge's own typed fields (format, files, metrics, the serving runtime by name) are read back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelforge.cache_dir import cache_root
from modelforge.errors import ModelforgeError
from modelforge.machine import package_versions
from modelforge.manifest import file_sha256
from modelforge.model.artifact import ModelArtifact, ServedOn

ENTRY_FILE = "entry.json"


@functools.cache
def code_digest() -> str:
    """Hash of modelforge's own source: a fix in a pass invalidates what the old code cached."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for file in sorted(package.rglob("*.py")):
        digest.update(file.relative_to(package).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def artifact_digest(artifact: ModelArtifact) -> str:
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


class _Rejected(Exception):
    """A cache entry that fails verification: a miss, reported once as a warning."""


# Formats a cache entry may hold: single files (plus ONNX external data) that modelforge's passes produce.
CACHED_FORMATS = ("onnx", "torch-export", "keras", "tflite")
ENTRY_KEYS = {"model", "format", "files", "metrics", "serving"}


def _plain_name(name: object) -> str:
    """A file name inside an entry: no folders, no `..`, nothing a path could be built from."""
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0") or name == ENTRY_FILE:
        raise _Rejected(f"file name {name!r} is not a plain name")
    return name


def _open_regular(path: Path) -> int:
    """A read-only descriptor on a regular file, never through a symlink (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise _Rejected(f"{path.name}: cannot be opened without following links ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Rejected(f"{path.name}: not a regular file")
    return fd


def _read_entry(entry: Path) -> dict[str, Any]:
    """entry.json, checked field by field: only modelforge's own typed fields are read back."""
    if entry.is_symlink() or not entry.is_dir():
        raise _Rejected("the entry folder is a link or not a folder")
    with os.fdopen(_open_regular(entry / ENTRY_FILE), "rb") as handle:
        try:
            meta = json.loads(handle.read())
        except ValueError:
            raise _Rejected(f"{ENTRY_FILE} is not valid JSON") from None
    if not isinstance(meta, dict) or set(meta) != ENTRY_KEYS:
        raise _Rejected(f"{ENTRY_FILE} does not hold exactly the fields {sorted(ENTRY_KEYS)}")
    if meta["format"] not in CACHED_FORMATS:
        raise _Rejected(f"format {meta['format']!r} is not one the cache holds")
    files = meta["files"]
    if not isinstance(files, list) or not files:
        raise _Rejected("files is not a list of files")
    for record in files:
        if not isinstance(record, dict) or set(record) != {"name", "sha256", "size"}:
            raise _Rejected("a files record is not {name, sha256, size}")
        _plain_name(record["name"])
        if not isinstance(record["sha256"], str) or not isinstance(record["size"], int):
            raise _Rejected(f"{record['name']}: sha256 or size is not recorded")
    if _plain_name(meta["model"]) not in {r["name"] for r in files}:
        raise _Rejected("the model file is not among the entry's files")
    if not isinstance(meta["metrics"], dict):
        raise _Rejected("metrics is not an object")
    return meta


def _served_on(serving: Any) -> ServedOn | None:
    if serving is None:
        return None
    if not isinstance(serving, dict) or set(serving) != {"runtime", "precision"}:
        raise _Rejected("serving is not {runtime, precision}")
    try:  # only runtime and precision names modelforge knows; anything else is a poisoned entry
        return ServedOn(str(serving["runtime"]), str(serving["precision"]))
    except ValueError as exc:
        raise _Rejected(str(exc)) from None


def _copy_verified(source: Path, target: Path, sha256: str, size: int) -> None:
    """Copy one entry file (never through a link, never over an existing file) and check its recorded hash."""
    digest, copied = hashlib.sha256(), 0
    with os.fdopen(_open_regular(source), "rb") as src, open(target, "xb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            copied += len(block)
            dst.write(block)
    if copied != size or digest.hexdigest() != sha256:
        raise _Rejected(f"{source.name}: its bytes do not match the recorded sha256 and size")


def _discard(entry: Path) -> None:
    """Remove a poisoned entry so the fresh result replaces it (a link is unlinked, never followed)."""
    try:
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        elif entry.is_dir():
            aside = entry.with_name(f".{entry.name}.rejected-{os.getpid()}")
            entry.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
    except OSError:
        pass


def lookup(key: str, into: Path, warn: Callable[[str], None] | None = None) -> tuple[ModelArtifact, dict] | None:
    """Copy a cached stage result into `into`; None on a miss.

    An entry is used only when every file it lists is a plain, regular file (no links) whose bytes match the
    sha256 and size recorded when it was stored. Anything else (a swapped model, a `../` name, an unknown
    runtime, a field modelforge never writes) is a miss, reported once through `warn`, and the entry is
    discarded so this run's result replaces it.
    """
    entry = cache_root() / key
    if not os.path.lexists(entry):
        return None
    copied: list[Path] = []
    try:
        meta = _read_entry(entry)
        served_on = _served_on(meta["serving"])
        for record in meta["files"]:
            target = into / record["name"]
            _copy_verified(entry / record["name"], target, record["sha256"], record["size"])
            copied.append(target)
        path = into / meta["model"]
        if meta["format"] == "onnx":
            from modelforge.model.onnx_model import onnx_artifact

            artifact = onnx_artifact(path)  # refuses external data outside `into` (see external_data_files)
        else:
            artifact = ModelArtifact(path, meta["format"])
        artifact.served_on = served_on
        return artifact, dict(meta["metrics"])
    except (_Rejected, OSError, ModelforgeError) as exc:
        reason = exc.message if isinstance(exc, ModelforgeError) else str(exc)
        if warn is not None:
            warn(f"stage cache: entry {key[:12]} ignored and recomputed ({reason})")
        for file in copied:
            file.unlink(missing_ok=True)
        _discard(entry)
        return None


def store(key: str, artifact: ModelArtifact, metrics: dict[str, Any]) -> None:
    root = cache_root()
    try:
        files = artifact.files()
    except (OSError, ModelforgeError):  # caching is optional: a result it cannot list is simply not cached
        return
    plain = all(f.parent == artifact.path.parent and f.is_file() and not f.is_symlink() for f in files)
    if artifact.format not in CACHED_FORMATS or not plain or artifact.openvino_ir is not None:
        return  # a folder (SavedModel), files in sub-folders or links, a pass-built IR (NNCF's): not cached
    try:  # caching is optional: a cache folder that cannot be written never fails the run
        root.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(root / key):
            return
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=root))
    except OSError:
        return
    try:
        records = []
        for file in files:
            copy = staging / _plain_name(file.name)
            shutil.copyfile(file, copy)
            records.append({"name": file.name, "sha256": file_sha256(copy), "size": copy.stat().st_size})
        served_on = artifact.served_on
        meta = {
            "model": artifact.path.name,
            "format": artifact.format,
            "files": records,
            "metrics": metrics,
            "serving": None if served_on is None else {"runtime": served_on.runtime, "precision": served_on.precision},
        }
        (staging / ENTRY_FILE).write_text(json.dumps(meta, indent=2, default=str))
        staging.rename(root / key)
    except (OSError, _Rejected):  # another process stored the same key first, or the disk is full: caching is optional
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def info() -> dict[str, Any]:
    root = cache_root()
    entries = [p for p in root.iterdir() if not p.is_symlink() and (p / ENTRY_FILE).is_file()] if root.is_dir() else []
    size = sum(f.lstat().st_size for e in entries for f in e.iterdir() if f.is_file() and not f.is_symlink())
    return {"path": str(root), "entries": len(entries), "size_bytes": size}


def clear() -> int:
    root = cache_root()
    count = info()["entries"]
    if root.is_dir():
        shutil.rmtree(root)
    return count
