"""Opening a data source by its form: the one entry point (`modelforge.data.open_dataset`).

Apart from the readers (sources, text, hf_images), which import the base `Dataset` from `sources`: the dispatch
imports them all, so it cannot live beside the base without an import cycle.
"""

from __future__ import annotations

from modelforge.data.sources import Dataset, ImageFolderDataset, NpyDataset, NpzDataset
from modelforge.data.text_records import TEXT_SUFFIXES
from modelforge.errors import InputError
from modelforge.model.huggingface.info import HFInfo
from modelforge.recipe.schema import DataConfig, DataSource


def open_dataset(
    source: DataSource,
    input_shape: tuple | None = None,
    huggingface: HFInfo | None = None,
    text: DataConfig | None = None,
) -> Dataset:
    """Open a data source by its form: a folder of images, a .npz or a .npy file; for a Hugging Face model
    (`huggingface`) also text (.txt, .jsonl, .csv; columns and length from `text`, the recipe's data config),
    and image folders through the folder's own image processor."""
    path = source.path
    if not path.exists():
        raise InputError(f"data {path} not found")
    suffix = path.suffix.lower()
    if huggingface is not None and (path.is_dir() or suffix in TEXT_SUFFIXES):
        if source.preprocessing is not None:
            raise InputError(
                f"{path}: preprocessing is not taken for a Hugging Face model",
                hint="its own tokenizer or preprocessor_config.json prepares the data",
            )
        if path.is_dir():
            from modelforge.data.hf_images import ProcessorImageFolderDataset

            return ProcessorImageFolderDataset(path, huggingface)
        from modelforge.data.text import TextDataset

        return TextDataset(path, huggingface, text)
    if path.is_dir():
        return ImageFolderDataset(path, source.preprocessing, input_shape)
    if source.preprocessing is not None:
        raise InputError(f"{path}: preprocessing applies to image folders only")
    if suffix == ".npz":
        return NpzDataset(path)
    if suffix == ".npy":
        return NpyDataset(path)
    if suffix in TEXT_SUFFIXES:
        raise InputError(
            f"data {path}: text data needs a Hugging Face model folder (its tokenizer prepares the text)",
            hint="pass the model's folder (config.json, tokenizer), or tokenized arrays in a .npz",
        )
    raise InputError(
        f"data {path}: expected a .npz file, a .npy file, an image folder, or text ({', '.join(TEXT_SUFFIXES)}) "
        "for a Hugging Face model"
    )
