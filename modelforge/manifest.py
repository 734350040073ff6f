"""manifest.json: every output file with sha256 and size, the recipe, versions and data hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
TOOL = "modelforge"  # what `--force` looks for before it moves a folder aside: only ours are ever moved


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_sha256(path: Path) -> str:
    """A file's hash, or for a folder a hash over its files' relative paths and contents."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + file_sha256(file).encode())
    return digest.hexdigest()


def build_manifest(
    output_dir: Path, recipe: dict[str, Any], data_hashes: dict[str, str], versions: dict[str, str]
) -> dict[str, Any]:
    from modelforge.safe_files import check_tree_has_no_links

    check_tree_has_no_links(output_dir)  # a link would put what it points at (outside) into the manifest
    files = [
        {
            "path": p.relative_to(output_dir).as_posix(),
            "sha256": file_sha256(p),
            "size_bytes": p.stat().st_size,
        }
        for p in sorted(output_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    ]
    return {
        "manifest_version": 1,
        "tool": TOOL,
        "files": files,
        "recipe": recipe,
        "versions": versions,
        "data_sha256": data_hashes,
    }


def is_modelforge_output(folder: Path) -> bool:
    """Whether `folder` holds a manifest.json that modelforge wrote (what `--force` requires before it moves a
    folder aside). Read as untrusted: a link, an oversized file or anything but our JSON shape is not ours."""
    import json
    import stat

    manifest = folder / MANIFEST_NAME
    try:
        info = manifest.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > 256 << 20:
            return False
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return False
    # manifests written before the `tool` field carry manifest_version 1 and the resolved recipe
    return data.get("tool") == TOOL or (data.get("manifest_version") == 1 and isinstance(data.get("recipe"), dict))
