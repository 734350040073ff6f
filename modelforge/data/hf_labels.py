"""Labels in data files as a Hugging Face model's class ids (its config's id2label / label2id)."""

from __future__ import annotations

from typing import Any

from modelforge.errors import InputError
from modelforge.model.huggingface.info import HFInfo

LABELS_SHOWN = 10


def label_id(value: Any, info: HFInfo) -> int | None:
    """A label as the model's class id: a name in label2id, or a class id itself (an int, or its text in a CSV or
    a folder name). None when it is neither."""
    if isinstance(value, str):
        for class_id, name in info.id2label.items():
            if name == value:
                return class_id
        text = value.strip()
        if text.lstrip("-").isdigit() and int(text) in info.id2label:
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool) and value in info.id2label:
        return value
    return None


def require_label_id(value: Any, info: HFInfo, where: str) -> int:
    """`label_id`, or exit 2 naming the label, where it was found and the labels the model knows."""
    class_id = label_id(value, info)
    if class_id is None:
        names = list(info.id2label.values())
        shown = ", ".join(names[:LABELS_SHOWN]) + (", ..." if len(names) > LABELS_SHOWN else "")
        raise InputError(f"{where}: label {value!r} is not one of the model's labels ({shown or 'none'})")
    return class_id
