"""Text data (.txt, .jsonl, .csv) for a Hugging Face model, tokenized by the folder's own tokenizer.

Tokenized arrays are never held whole: the file is indexed once (record offsets, labels checked) and each
`read(key, start, stop)` tokenizes just those records, at a fixed length (padding="max_length", truncation) so every
chunk has the model's shape. The last chunk is kept, because a batch reads the same range once per model input.
"""

from __future__ import annotations

import hashlib
import json
import math
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from modelforge.data.hf_labels import label_id, require_label_id
from modelforge.data.sources import IGNORE_LABEL, ArrayInfo, Dataset
from modelforge.data.text_records import Record, RecordIndex
from modelforge.errors import InputError
from modelforge.model.huggingface.info import HFInfo
from modelforge.model.huggingface.preprocess import load_tokenizer
from modelforge.recipe.schema import DataConfig

MAX_LENGTH_CAP = 512  # the default length when the tokenizer states none (or an unbounded one)
SCORE_COLUMN = "score"  # gold similarity of a pair (feature extraction)
# Tokenizer files whose content decides the arrays: part of the data's cache key.
TOKENIZER_KEY_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json")


def _words(text: str | list[str]) -> list[str]:
    """Token classification's words: a list as given, or a text split on whitespace (as its tags count them)."""
    return text if isinstance(text, list) else text.split()


class TextDataset(Dataset):
    """Records of a text file as model inputs keyed by `HFInfo.input_names`, int64 [N, max_length].

    Feature extraction with a pair column holds 2N samples, texts A then texts B (`pair_count` = N); sequence
    classification encodes a pair jointly (N samples); token classification reads words (a list, or the text split
    on whitespace) and one tag per word."""

    def __init__(self, path: Path, info: HFInfo, config: DataConfig | None = None, tokenizer: Any = None):
        self.path = path
        self.info = info
        self.config = config or DataConfig()
        if "input_ids" not in info.input_names:
            raise InputError(f"{path}: text data, but the model takes {', '.join(info.input_names)} (not text)")
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(info.folder)
        self.max_length = self._max_length()
        self.words = info.task == "token-classification"  # tokenized as words: tags align to them
        # A .txt line is the text itself (RecordIndex keys it "text"), whatever the text column is called, and has
        # no second text: the columns name the fields of .jsonl and .csv files (one setting for all files of a run).
        txt = path.suffix.lower() == ".txt"
        self.text_column = "text" if txt else self.config.text_column
        self.pair_column = None if txt else self.config.text_pair_column
        self._labelled: bool | None = None
        self._scored: bool | None = None
        self._label_ids = array("q")
        self._scores = array("d")
        self._cache: tuple[tuple[int, int], dict[str, np.ndarray]] | None = None
        self._token_labels: np.ndarray | None = None
        self._records = RecordIndex(path, self._check, self._check_header)
        paired = self.info.task == "feature-extraction" and self.pair_column is not None
        self.pair_count = len(self._records) if paired else 0
        count = 2 * self.pair_count if paired else len(self._records)
        self.arrays = {name: ArrayInfo((count, self.max_length), np.dtype(np.int64)) for name in info.input_names}
        self.read(info.input_names[0], 0, 1)  # an input the tokenizer does not make is found now, not mid-run

    # --- the index pass: each record checked once, labels and scores kept (one number each) ---

    def _max_length(self) -> int:
        stated = getattr(self.tokenizer, "model_max_length", None)
        limit = stated if isinstance(stated, int) and 0 < stated < 1_000_000 else None  # 1e30: "none stated"
        wanted = self.config.max_length
        if wanted is not None:
            if limit is not None and wanted > limit:
                raise InputError(
                    f"max_length {wanted} exceeds the tokenizer's model_max_length {limit} "
                    f"({self.info.folder}: the model has no positions past it)"
                )
            return wanted
        return self.info.max_length or min(limit or MAX_LENGTH_CAP, MAX_LENGTH_CAP)

    def _check_header(self, columns: list[str]) -> None:
        for column in (self.text_column, self.pair_column):
            if column is not None and column not in columns:
                raise InputError(f"{self.path}: no column '{column}' (columns: {', '.join(columns) or 'none'})")

    def _check(self, record: Record, line: int) -> None:
        where = f"{self.path}: line {line}"
        text = self._field(record, self.text_column, where)
        word_list = isinstance(text, list) and all(isinstance(w, str) for w in text)
        if not isinstance(text, str) and not (self.words and word_list):
            kind = "a string or a list of words" if self.words else "a string"
            raise InputError(f"{where}: '{self.text_column}' must be {kind}, not {type(text).__name__}")
        if self.words and self.pair_column:
            raise InputError(f"{where}: token classification takes no pair column")
        pair = self.pair_column
        if pair is not None and not isinstance(self._field(record, pair, where), str):
            raise InputError(f"{where}: '{self.pair_column}' must be a string")
        if self.info.task == "feature-extraction":
            self._check_score(record, where)
        else:
            self._check_label(record, where, text)

    def _field(self, record: Record, column: str, where: str) -> Any:
        if column not in record:
            raise InputError(f"{where} has no '{column}' field (it has: {', '.join(record) or 'nothing'})")
        return record[column]

    def _present(self, record: Record, column: str, kind: str, where: str) -> bool:
        """Whether the record carries this column: all records do, or none (decided by the first)."""
        has = column in record and record[column] not in (None, "")
        first = self._labelled if kind == "label" else self._scored
        if first is None:
            return has
        if has != first:
            raise InputError(f"{where}: {'no' if first else 'a'} '{column}' {kind}, unlike the first line")
        return has

    def _check_label(self, record: Record, where: str, text: Any) -> None:
        column = self.config.label_column
        self._labelled = self._present(record, column, "label", where)
        if not self._labelled:
            return
        value = record[column]
        if self.words:
            count = len(_words(text))
            if not isinstance(value, list) or len(value) != count:
                got = f"{len(value)} tags" if isinstance(value, list) else type(value).__name__
                raise InputError(f"{where}: '{column}' must be a list of {count} tags, one a word; got {got}")
            for tag in value:
                require_label_id(tag, self.info, where)
        else:
            self._label_ids.append(require_label_id(value, self.info, where))

    def _check_score(self, record: Record, where: str) -> None:
        """The gold similarity of a pair: the `score` column, else the label column."""
        column = SCORE_COLUMN if SCORE_COLUMN in record else self.config.label_column
        if self.pair_column is None:
            return
        self._scored = self._present(record, column, "score", where)
        if self._scored:
            try:
                score = float(record[column])
            except (TypeError, ValueError):
                score = math.nan
            if not math.isfinite(score):
                raise InputError(f"{where}: score {record[column]!r} is not a finite number")
            self._scores.append(score)

    # --- reading: tokenize a chunk, keep it for the other inputs of the same batch ---

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != (start, stop):
            self._cache = ((start, stop), self._tokenize(start, stop))
        return self._cache[1][key]

    def _tokenize(self, start: int, stop: int) -> dict[str, np.ndarray]:
        encoded = self._encode(*self._texts(start, stop))
        missing = [name for name in self.info.input_names if name not in encoded]
        if missing:
            raise InputError(
                f"{self.info.folder}: the tokenizer makes no '{missing[0]}' for the model's input of that name "
                f"(it makes {', '.join(encoded)})"
            )
        return {name: np.asarray(encoded[name], dtype=np.int64) for name in self.info.input_names}

    def _texts(self, start: int, stop: int) -> tuple[list[Any], list[str] | None]:
        """Texts (and joint pair texts) of samples [start, stop): with pairs for feature extraction, samples
        [0, N) are the records' first texts and [N, 2N) their second."""
        text, pair = self.text_column, self.pair_column
        n = self.pair_count
        if not n:
            records = self._records.fields(start, stop)
            return [r[text] for r in records], ([r[pair] for r in records] if pair is not None else None)
        first = [r[text] for r in self._records.fields(start, min(stop, n))] if start < n else []
        second = [r[pair] for r in self._records.fields(max(start, n) - n, stop - n)] if stop > n else []
        return first + second, None

    def _encode(self, texts: list[Any], pairs: list[str] | None = None) -> Any:
        return self.tokenizer(
            [_words(t) for t in texts] if self.words else texts,
            pairs,
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            is_split_into_words=self.words,
            return_token_type_ids="token_type_ids" in self.info.input_names,
            return_tensors="np",
        )

    # --- labels ---

    def labels(self) -> np.ndarray | None:
        """int64 [N] class ids; token classification: int64 [N, max_length], IGNORE_LABEL off first sub-tokens."""
        if not self._labelled:
            return None
        if self.info.task != "token-classification":
            return np.array(self._label_ids, dtype=np.int64)
        if self._token_labels is None:
            self._token_labels = self._align_token_labels()
        return self._token_labels

    def _align_token_labels(self, chunk: int = 256) -> np.ndarray:
        """Each word's tag on its first sub-token only, as the model was trained (tokenized again, chunk by chunk:
        the arrays are never all held)."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise InputError(f"{self.info.folder}: token labels need a fast tokenizer (tokenizer.json) to align words")
        out = np.full((len(self._records), self.max_length), IGNORE_LABEL, dtype=np.int64)
        for begin in range(0, len(self._records), chunk):
            records = self._records.fields(begin, min(begin + chunk, len(self._records)))
            encoded = self._encode([r[self.text_column] for r in records])
            for row, record in enumerate(records):
                tags = [label_id(tag, self.info) for tag in record[self.config.label_column]]
                previous = None
                for position, word in enumerate(encoded.word_ids(row)):
                    if word is not None and word != previous:
                        out[begin + row, position] = tags[word]
                    previous = word
        return out

    def pair_scores(self) -> np.ndarray | None:
        """Gold similarity of each pair (feature extraction with a `score` column), float [N]."""
        return np.array(self._scores, dtype=np.float64) if self.pair_count and self._scored else None

    def settings_key(self) -> str:
        """What decides the arrays besides the file: columns, length, the tokenizer's files (stage cache key)."""
        files = {}
        for name in TOKENIZER_KEY_FILES:
            file = self.info.folder / name
            if file.is_file():
                files[name] = hashlib.sha256(file.read_bytes()).hexdigest()
        settings = {"text": self.text_column, "pair": self.pair_column, "label": self.config.label_column}
        return json.dumps({**settings, "max_length": self.max_length, "tokenizer": files}, sort_keys=True)
