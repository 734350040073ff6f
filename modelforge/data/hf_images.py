"""An image folder prepared by a Hugging Face folder's own image processor (preprocessor_config.json).

Resizing, rescaling and normalisation then match what the model was trained with, and the user passes no
preprocessing. Class sub-folders are named by the model's labels (or class ids), mapped through label2id: sorted
folder names would silently disagree with the model's class order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.data.hf_labels import require_label_id
from modelforge.data.sources import ArrayInfo, Dataset, list_images
from modelforge.errors import InputError
from modelforge.model.huggingface.info import HFInfo
from modelforge.model.huggingface.preprocess import IMAGE_PROCESSOR_FILE, load_image_processor


class ProcessorImageFolderDataset(Dataset):
    """Images as the model's one image input (`pixel_values`), float32, shape from the image processor."""

    def __init__(self, path: Path, info: HFInfo, processor: Any = None):
        self.path = path
        self.info = info
        if len(info.input_names) != 1 or "input_ids" in info.input_names:
            raise InputError(f"{path}: an image folder, but the model takes {', '.join(info.input_names)}")
        self.key = info.input_names[0]
        classes, files = list_images(path)
        ids = [require_label_id(name, info, f"{path / name}: class folder") for name in classes]
        self._files = [(file, ids[index] if index >= 0 else -1) for file, index in files]
        self.classes = classes
        self.processor = processor if processor is not None else load_image_processor(info.folder)
        first = self.read(self.key, 0, 1)
        self.arrays = {self.key: ArrayInfo((len(self._files), *first.shape[1:]), np.dtype(np.float32))}

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        from PIL import Image

        images = []
        for file, _ in self._files[start:stop]:
            try:
                with Image.open(file) as img:
                    images.append(img.convert("RGB"))
            except OSError as exc:
                raise InputError(f"{file}: not a readable image ({exc})") from exc
        try:
            pixels = self.processor(images=images, return_tensors="np")["pixel_values"]
        except Exception as exc:  # noqa: BLE001 (any exception of the processor: a config it cannot apply)
            raise InputError(f"{self.info.folder / IMAGE_PROCESSOR_FILE}: cannot prepare the images ({exc})") from exc
        return np.ascontiguousarray(pixels, dtype=np.float32)

    def labels(self) -> np.ndarray | None:
        if not self.classes:
            return None
        return np.array([class_id for _, class_id in self._files], dtype=np.int64)

    def nonfinite_samples(self, key: str) -> tuple[int, int | None, list[str]]:
        return 0, None, []  # pixels are finite and so is the processor's mean/std: not worth decoding twice

    def settings_key(self) -> str:
        """The image processor's config decides the arrays: part of the stage cache key."""
        config = self.info.folder / IMAGE_PROCESSOR_FILE
        return hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else ""
