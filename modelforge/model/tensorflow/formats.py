"""Which TensorFlow format a path holds, read from its bytes (no TensorFlow import).

`.keras` archives and `.h5` files record the Keras version that saved them: Keras 3 (`keras`) and Keras 2
(`tf_keras`) files load with different libraries, and only Keras 2 models can be pruned with TF-MOT.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from modelforge.errors import InputError
from modelforge.optional import require

TF_FORMATS = ("keras", "savedmodel")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def tf_format(path: Path) -> str | None:
    """'keras' for a .keras/.h5 file, 'savedmodel' for a SavedModel folder, None for anything else."""
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else None
    suffix = path.suffix.lower()
    if suffix not in KERAS_SUFFIXES or not path.is_file():
        return None
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise InputError(f"model {path}: not a Keras archive (.keras files are zip archives)")
    if suffix != ".keras" and path.read_bytes()[:8] != HDF5_MAGIC:
        raise InputError(f"model {path}: not an HDF5 file (.h5 Keras models are HDF5)")
    return "keras"


def keras_version(path: Path) -> str:
    """The Keras version that saved a .keras or .h5 file ('' when it does not say)."""
    if path.suffix.lower() == ".keras":
        with zipfile.ZipFile(path) as archive:
            if "metadata.json" not in archive.namelist():
                return ""
            try:
                return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
            except ValueError:
                return ""
    h5py = require("h5py", f"loading the Keras model {path}")  # a TensorFlow dependency: there with [tf]

    with h5py.File(path, "r") as handle:
        version = handle.attrs.get("keras_version", "")
    return version.decode() if isinstance(version, bytes) else str(version)


def is_keras3(path: Path) -> bool:
    return keras_version(path).startswith("3.")
