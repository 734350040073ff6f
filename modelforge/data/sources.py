"""Readers for the accepted data formats. Each reads samples in batches, never the whole set at once."""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelforge.errors import InputError
from modelforge.recipe.schema import Preprocessing

LABELS_KEY = "labels"
# Token labels: a position no metric counts (special tokens, padding, a word's later sub-tokens), as in transformers.
IGNORE_LABEL = -100
# What reading a corrupt, truncated or unsupported file or zip member raises: bad input, never a crash.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,  # a zip compression method Python lacks
    RuntimeError,  # an encrypted zip member
)
try:
    import lzma

    READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # Python built without lzma: zipfile cannot open such members either
    pass
# The finite-values check reads arrays in chunks of about this many bytes: memory stays flat.
FINITE_CHECK_CHUNK_BYTES = 16 << 20
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass(frozen=True)
class ArrayInfo:
    """Shape and dtype of one array of a data set; shape[0] is the sample count."""

    shape: tuple[int, ...]
    dtype: np.dtype


class Dataset:
    """Samples on the first axis of one or more named arrays, plus optional class labels."""

    path: Path
    arrays: dict[str, ArrayInfo]

    @property
    def num_samples(self) -> int:
        return next(iter(self.arrays.values())).shape[0]

    def labels(self) -> np.ndarray | None:
        return None

    def settings_key(self) -> str:
        """What decides the arrays besides the file's bytes (preprocessing, a tokenizer): part of cache keys."""
        return ""

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of one array."""
        raise NotImplementedError

    def iter_chunks(self, key: str, chunk: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.num_samples if stop is None else stop
        for begin in range(start, stop, chunk):
            yield self.read(key, begin, min(begin + chunk, stop))

    def nonfinite_samples(self, key: str) -> tuple[int, int | None, list[str]]:
        """Samples of a float array holding NaN or +-Inf: (how many, the first one's index, which kinds).

        One streaming pass over the array in chunks of about FINITE_CHECK_CHUNK_BYTES."""
        info = self.arrays[key]
        if info.dtype.kind != "f":
            return 0, None, []
        row_bytes = max(1, math.prod(info.shape[1:]) * info.dtype.itemsize)
        chunk = max(1, FINITE_CHECK_CHUNK_BYTES // row_bytes)
        bad, first, kinds = 0, None, set()
        begin = 0
        for values in self.iter_chunks(key, chunk):
            rows = values.reshape(len(values), -1)
            bad_rows = ~np.isfinite(rows).all(axis=1)
            if bad_rows.any():
                bad += int(bad_rows.sum())
                first = begin + int(np.argmax(bad_rows)) if first is None else first
                flagged = rows[bad_rows]
                if np.isnan(flagged).any():
                    kinds.add("NaN")
                if np.isinf(flagged).any():
                    kinds.add("Inf")
            begin += len(values)
        return bad, first, sorted(kinds, reverse=True)


class _NpyMember:
    """Streams rows of one .npy file (plain or inside a zip) without loading it whole.

    `size`: the file's (or the uncompressed member's) size in bytes, to find a truncated array before any work.
    """

    def __init__(self, opener, label: str, size: int | None = None):
        self._open = opener
        self._label = label
        try:
            with self._open() as f:
                self.info, self._offset = self._header(f)
        except READ_ERRORS as exc:
            raise InputError(f"{label}: cannot be read ({exc})") from exc
        self._row_bytes = math.prod(self.info.shape[1:]) * self.info.dtype.itemsize
        needed = self._offset + self.info.shape[0] * self._row_bytes
        if size is not None and size < needed:
            raise InputError(f"{label}: file is truncated ({size} bytes; its header promises {needed})")

    def _header(self, f) -> tuple[ArrayInfo, int]:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except (ValueError, TypeError, SyntaxError) as exc:
            raise InputError(f"{self._label}: not a valid .npy array ({exc})") from exc
        if any(not isinstance(d, int) or d < 0 for d in shape):
            raise InputError(f"{self._label}: not a valid .npy array (shape {shape})")
        if dtype.hasobject:
            raise InputError(f"{self._label}: object arrays are not accepted (they would need unpickling)")
        if fortran and len(shape) > 1:
            raise InputError(f"{self._label}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray")
        if len(shape) == 0:
            raise InputError(f"{self._label}: expected samples on the first axis, got a scalar")
        return ArrayInfo(tuple(shape), dtype), f.tell()

    def read(self, start: int, stop: int) -> np.ndarray:
        return next(self.iter_chunks(stop - start, start, stop))

    def iter_chunks(self, chunk: int, start: int, stop: int) -> Iterator[np.ndarray]:
        count = self.info.shape[0]
        if stop > count:  # samples the header does not promise: not a truncated file, too few samples
            held = "zero samples" if count == 0 else f"{count} samples, fewer than the {stop} needed"
            raise InputError(f"{self._label}: holds {held}")
        # One open stream read front to back: seeking inside a compressed zip member re-inflates it.
        try:
            with self._open() as f:
                f.seek(self._offset + start * self._row_bytes)
                for begin in range(start, stop, chunk):
                    rows = min(chunk, stop - begin)
                    raw = f.read(rows * self._row_bytes)
                    if len(raw) != rows * self._row_bytes:
                        raise InputError(f"{self._label}: file is truncated")
                    yield np.frombuffer(raw, dtype=self.info.dtype).reshape((rows, *self.info.shape[1:]))
        except READ_ERRORS as exc:  # a corrupt zip member shows only when it is read (bad CRC, bad deflate data)
            raise InputError(f"{self._label}: cannot be read ({exc})") from exc


class NpzDataset(Dataset):
    """`.npz`: one array per model input, keyed by input name; optional `labels`."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (*READ_ERRORS, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npz file ({exc})") from exc
        self._members: dict[str, _NpyMember] = {}
        for info in self._zip.infolist():
            if info.filename.endswith(".npy") and not info.is_dir():
                key = info.filename[: -len(".npy")]
                self._members[key] = _NpyMember(lambda n=info: self._zip.open(n), f"{path}[{key}]", size=info.file_size)
        self._labels = self._members.pop(LABELS_KEY, None)
        if not self._members:
            raise InputError(f"{path}: holds no input arrays (only {LABELS_KEY!r} or nothing)")
        self.arrays = {k: m.info for k, m in self._members.items()}
        counts = {k: a.shape[0] for k, a in self.arrays.items()}
        if self._labels is not None:
            counts[LABELS_KEY] = self._labels.info.shape[0]
        if len(set(counts.values())) > 1:
            raise InputError(f"{path}: arrays disagree on the sample count: {counts}")

    def labels(self) -> np.ndarray | None:
        if self._labels is None:
            return None
        labels = self._labels.read(0, self._labels.info.shape[0])
        # [N] class ids, or [N, L] tags of a token classifier (-100: a position without a tag).
        if labels.ndim not in (1, 2) or labels.dtype.kind not in "iu":
            raise InputError(
                f"{self.path}[{LABELS_KEY}]: expected an integer array of class ids, [N] (or [N, L] token tags), "
                f"got {labels.dtype} {list(labels.shape)}"
            )
        return labels.astype(np.int64)

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        return self._members[key].read(start, stop)

    def iter_chunks(self, key: str, chunk: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.num_samples if stop is None else stop
        return self._members[key].iter_chunks(chunk, start, stop)


class NpyDataset(Dataset):
    """`.npy`: a single array for a single-input model."""

    def __init__(self, path: Path):
        self.path = path
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        self._member = _NpyMember(lambda: open(path, "rb"), str(path), size)  # noqa: SIM115 (the reader closes it)
        self.arrays = {path.stem: self._member.info}

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        return self._member.read(start, stop)

    def iter_chunks(self, key: str, chunk: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.num_samples if stop is None else stop
        return self._member.iter_chunks(chunk, start, stop)


class ImageFolderDataset(Dataset):
    """A folder of images, optionally one sub-folder per class (sorted names give the class ids)."""

    KEY = "images"

    def __init__(self, path: Path, preprocessing: Preprocessing | None, input_shape: tuple | None = None):
        self.path = path
        self.preprocessing = preprocessing or Preprocessing()
        classes, files = list_images(path)
        self.classes = classes
        self._files = files
        self.size = self._resolve_size(input_shape)
        channels = 1 if self.preprocessing.color == "L" else 3
        for name in ("mean", "std"):  # checked here, before any work, not when the first image loads
            values = getattr(self.preprocessing, name)
            if len(values) not in (1, channels):
                raise InputError(
                    f"{path}: preprocessing.{name} has {len(values)} values; {self.preprocessing.color} images have "
                    f"{channels} channel(s): give {'1 value' if channels == 1 else f'1 or {channels} values'}"
                )
        if not all(math.isfinite(v) for v in (*self.preprocessing.mean, *self.preprocessing.std)):
            raise InputError(f"{path}: preprocessing.mean and preprocessing.std must be finite numbers")
        if 0 in self.preprocessing.std:
            raise InputError(f"{path}: preprocessing.std holds 0 (every pixel would divide by zero)")
        h, w = self.size
        sample = (channels, h, w) if self.preprocessing.layout == "NCHW" else (h, w, channels)
        self.arrays = {self.KEY: ArrayInfo((len(files), *sample), np.dtype(np.float32))}

    def _resolve_size(self, input_shape: tuple | None) -> tuple[int, int]:
        if self.preprocessing.size is not None:
            return tuple(self.preprocessing.size)
        if input_shape is not None and len(input_shape) == 4:
            hw = input_shape[2:4] if self.preprocessing.layout == "NCHW" else input_shape[1:3]
            if all(isinstance(d, int) for d in hw):
                return tuple(hw)
        raise InputError(f"{self.path}: preprocessing.size is required: the model input has no fixed height and width")

    def nonfinite_samples(self, key: str) -> tuple[int, int | None, list[str]]:
        return 0, None, []  # pixels are 0..255 and mean/std finite (checked): never NaN, not worth decoding twice

    def settings_key(self) -> str:
        return self.preprocessing.model_dump_json()

    def labels(self) -> np.ndarray | None:
        if not self.classes:
            return None
        return np.array([c for _, c in self._files], dtype=np.int64)

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        return np.stack([self._load(f) for f, _ in self._files[start:stop]])

    def _load(self, file: Path) -> np.ndarray:
        from PIL import Image

        spec = self.preprocessing
        try:
            with Image.open(file) as img:
                img = img.convert("L" if spec.color == "L" else "RGB")
                h, w = self.size
                shorter = spec.resize or round(min(h, w) / 0.875)
                scale = shorter / min(img.size)
                img = img.resize(
                    (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale))), Image.BILINEAR
                )
                left, top = (img.size[0] - w) // 2, (img.size[1] - h) // 2
                img = img.crop((left, top, left + w, top + h))
                pixels = np.asarray(img, dtype=np.float32) / 255.0
        except OSError as exc:
            raise InputError(f"{file}: not a readable image ({exc})") from exc
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if spec.color == "BGR":
            pixels = pixels[:, :, ::-1]
        mean = np.asarray(spec.mean, dtype=np.float32)
        std = np.asarray(spec.std, dtype=np.float32)
        pixels = (pixels - mean) / std
        return np.ascontiguousarray(pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else pixels)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(path: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class folder names, sorted; (image, class index) pairs): one sub-folder per class, or images with no
    class (index -1). Exit 2 when there is no image."""
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[Path, int]] = []
    if classes:
        for class_id, name in enumerate(classes):
            files += [(f, class_id) for f in sorted((path / name).rglob("*")) if _is_image(f)]
    else:
        files = [(f, -1) for f in sorted(path.iterdir()) if _is_image(f)]
    if not files:
        raise InputError(f"{path}: no image files found (accepted: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return classes, files
