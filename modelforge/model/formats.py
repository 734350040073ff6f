"""What a model file holds, read from its first bytes (no framework imported).

A file's suffix chooses the loader (and with it the safety checks of that loader); the bytes must agree with
it. Sniffing lets an error say what a misnamed, empty or corrupt file really is, before any framework reads it
(torch logs a 12-line traceback when it is handed a text file named `.pt2`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from modelforge.errors import InputError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# HDF5 files may start with a user block: the signature is then at 512, 1024, 2048, ... bytes.
HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)
TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, at bytes 4..8
PROTOBUF_WIRE_TYPES = (0, 1, 2, 5)  # varint, 64-bit, length-delimited, 32-bit (groups are not used by ONNX)
ONNX_REQUIRED_FIELDS = {1, 7}  # ir_version, graph: a ModelProto has at least one of them

# What each kind of bytes is called in a message, and the suffix that loads it.
DESCRIPTIONS = {
    "onnx": ("an ONNX model", ".onnx"),
    "torch-export": ("a torch.export archive", ".pt2"),
    "torchscript": ("a TorchScript archive", ".pt"),
    "keras-archive": ("a Keras archive", ".keras"),
    "zip": ("a zip archive", ".npz (data) or .pt2/.keras (models)"),
    "hdf5": ("an HDF5 file", ".h5 (Keras)"),
    "tflite": ("a TFLite flatbuffer", None),
    "savedmodel": ("a SavedModel folder", None),
    "text": ("text", None),
    "empty": ("empty (0 bytes)", None),
}

EXPECTED = "expected .onnx, .pt2 (torch.export), TorchScript (.pt), .keras/.h5 (Keras) or a SavedModel folder"


def sniff(path: Path) -> str | None:
    """The kind of bytes at `path` (a key of DESCRIPTIONS), or None when they are none of them."""
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else None
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with path.open("rb") as f:
        head = f.read(4096)
    if zipfile.is_zipfile(path):
        return _zip_kind(path)
    if any(head[offset : offset + 8] == HDF5_MAGIC for offset in HDF5_OFFSETS):
        return "hdf5"
    if head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if _is_onnx_protobuf(path, size):
        return "onnx"
    if _is_text(head):
        return "text"
    return None


def describe(kind: str | None) -> str:
    return DESCRIPTIONS[kind][0] if kind in DESCRIPTIONS else "none of the model formats modelforge reads"


def _zip_kind(path: Path) -> str:
    """Which archive a zip is, from its member names (never from their contents)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "zip"
    leaves = {name.rsplit("/", 1)[-1] for name in names}
    if "archive_format" in leaves or any("/models/" in n and n.endswith(".json") for n in names):
        return "torch-export"
    if any("/code/" in n for n in names) or "constants.pkl" in leaves:
        return "torchscript"
    if {"config.json", "metadata.json"} <= set(names):
        return "keras-archive"
    return "zip"


def _read_varint(f) -> int | None:
    value = shift = 0
    for _ in range(10):
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    return None


def _is_onnx_protobuf(path: Path, size: int, max_fields: int = 100_000) -> bool:
    """Walk the top-level protobuf fields to the file's exact end (skipping the graph without reading it):
    text, npz and random bytes fail within a field or two; a ModelProto names ir_version or a graph."""
    seen: set[int] = set()
    with path.open("rb") as f:
        for _ in range(max_fields):
            if f.tell() == size:
                return bool(seen & ONNX_REQUIRED_FIELDS)
            tag = _read_varint(f)
            if tag is None:
                return False
            field, wire = tag >> 3, tag & 7
            if field == 0 or wire not in PROTOBUF_WIRE_TYPES:
                return False
            if wire == 0:
                if _read_varint(f) is None:
                    return False
            else:
                length = {1: 8, 5: 4}.get(wire) if wire != 2 else _read_varint(f)
                if length is None or f.tell() + length > size:
                    return False
                f.seek(length, 1)
            seen.add(field)
    return False


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


# What the bytes of a file with each suffix may be; a corrupt ONNX protobuf (None) is left to the ONNX reader,
# which names what is wrong with it.
SUFFIX_KINDS = {".onnx": ("onnx", None), ".pt2": ("torch-export", "zip")}


def check_bytes(path: Path, suffix: str, role: str = "model") -> None:
    """Refuse an empty file, or one whose bytes are plainly another format than its suffix says (exit 2)."""
    kind = sniff(path)
    if kind == "empty":
        raise InputError(f"{role} {path} is empty (0 bytes)")
    if suffix not in SUFFIX_KINDS or kind in SUFFIX_KINDS[suffix]:
        return
    expected = describe(SUFFIX_KINDS[suffix][0])
    if kind in (None, "text", "zip"):
        raise InputError(f"{role} {path}: not {expected} (the file holds {describe(kind)})")
    raise InputError(f"{role} {path}: named {suffix} but holds {describe(kind)}{_rename_hint(kind)}")


def unknown_suffix_error(path: Path) -> InputError:
    """The error for a model file whose suffix modelforge does not read: says what its bytes are."""
    kind = sniff(path)
    if kind in (None, "text", "empty", "zip"):
        return InputError(f"model {path}: unknown format (the file holds {describe(kind)}); {EXPECTED}")
    return InputError(f"model {path}: holds {describe(kind)}, but its name ends in '{path.suffix}'{_rename_hint(kind)}")


def _rename_hint(kind: str | None) -> str:
    if kind == "tflite":
        return "; a .tflite is an output (export --target tflite), not an input: pass the Keras model it came from"
    suffix = DESCRIPTIONS.get(kind, (None, None))[1] if kind else None
    return f"; name it {suffix}" if suffix else f"; {EXPECTED}"
