"""Where modelforge keeps state between runs (stage cache, training checkpoints): one root, set by the user only."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`MODELFORGE_CACHE_DIR`, else the XDG cache folder: environment only, never a file's say."""
    if os.environ.get("MODELFORGE_CACHE_DIR"):
        return Path(os.environ["MODELFORGE_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "modelforge" / "stages"
