"""A Hugging Face folder's own tokenizer or image processor, loaded from the folder alone.

The data is prepared exactly as the model was trained to see it, and never with code or files from elsewhere:
the hub is switched off before transformers is imported (a missing file is an error, never a download), and
`trust_remote_code` stays off unless the command line said --trust-remote-code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge.errors import InputError, first_line
from modelforge.model.huggingface.folder import IMAGE_PROCESSOR, TOKENIZER_FILES
from modelforge.model.huggingface.offline import import_transformers
from modelforge.quiet import quiet

IMAGE_PROCESSOR_FILE = IMAGE_PROCESSOR


def load_tokenizer(folder: Path, trust_remote_code: bool = False) -> Any:
    """The folder's tokenizer (fast where the folder has tokenizer.json). Exit 2, naming the file, when it is
    missing or cannot be read. `trust_remote_code`: only from the command line (--trust-remote-code)."""
    folder = Path(folder)
    present = [name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not present:
        raise InputError(
            f"{folder}: no tokenizer found (expected one of {', '.join(TOKENIZER_FILES)})",
            hint="copy the tokenizer files next to config.json (tokenizer.save_pretrained(folder))",
        )
    transformers = import_transformers()
    try:
        with quiet():
            return transformers.AutoTokenizer.from_pretrained(
                folder, local_files_only=True, trust_remote_code=trust_remote_code
            )
    except Exception as exc:  # noqa: BLE001 (a broken file surfaces as any exception type of transformers/tokenizers)
        raise InputError(f"{folder / present[0]}: the tokenizer cannot be loaded ({first_line(exc, 200)})") from exc


def load_image_processor(folder: Path) -> Any:
    """The folder's image processor (preprocessor_config.json): resizing, rescaling and normalisation as the
    model was trained. Exit 2, naming the file, when it is missing or cannot be read."""
    folder = Path(folder)
    config = folder / IMAGE_PROCESSOR_FILE
    if not config.is_file():
        raise InputError(
            f"{config}: not found (a vision model folder needs its image processor config)",
            hint="image_processor.save_pretrained(folder)",
        )
    transformers = import_transformers()
    try:
        return transformers.AutoImageProcessor.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False, use_fast=False
        )
    except Exception as exc:  # noqa: BLE001 (any exception type of transformers: a bad or unknown config)
        raise InputError(f"{config}: the image processor cannot be loaded ({first_line(exc, 200)})") from exc
