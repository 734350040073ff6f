"""Records of a text file (.txt, .jsonl, .csv), indexed by byte offset in one pass and read back by range.

A calibration file may be larger than memory: the index keeps two int64 offsets per record, and a range of records
is read with one seek. Every record is parsed once while indexing, so a malformed line is reported (file and line)
before any work starts, not halfway through a calibration.
"""

from __future__ import annotations

import csv
import io
import json
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from modelforge.errors import InputError

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv")
UTF8_BOM = b"\xef\xbb\xbf"

Record = dict[str, Any]


def _raw_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number from 1, byte offset, the line's bytes with its line end) of each line, read buffered."""
    try:
        with open(path, "rb") as f:
            offset = 0
            for number, line in enumerate(f, start=1):
                start = offset
                offset += len(line)
                if number == 1 and line.startswith(UTF8_BOM):
                    line, start = line[len(UTF8_BOM) :], start + len(UTF8_BOM)
                yield number, start, line
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _line_spans(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """One record a line: (line number, byte offset, bytes without the line end)."""
    for number, start, line in _raw_lines(path):
        yield number, start, line.rstrip(b"\r\n")


def _csv_spans(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """CSV records, which may span lines inside quotes: a record ends at a line end where the quotes seen so far
    are balanced (an escaped quote "" counts twice, so it keeps the balance)."""
    first: tuple[int, int] | None = None
    parts: list[bytes] = []
    quotes = 0
    for number, start, line in _raw_lines(path):
        if first is None:
            first, parts, quotes = (number, start), [], 0
        parts.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield first[0], first[1], b"".join(parts).rstrip(b"\r\n")
            first = None
    if first is not None:
        raise InputError(f"{path}: line {first[0]}: a quoted field is never closed")


def _decode(path: Path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: line {number} is not UTF-8 text (byte {exc.start + 1})", hint="save the file as UTF-8"
        ) from None


class RecordIndex:
    """The non-blank records of a text file: `fields(start, stop)` parses records [start, stop) back into dicts."""

    def __init__(
        self,
        path: Path,
        check: Callable[[Record, int], None],
        check_header: Callable[[list[str]], None] | None = None,
    ):
        """One pass over the file; `check(record, line)` validates each record (columns, labels) as it is read,
        `check_header(columns)` a CSV header."""
        self.path = path
        self.starts = array("q")
        self.ends = array("q")
        self.columns: list[str] = []
        self._header: list[str] | None = None
        suffix = path.suffix.lower()
        self._parse = {".txt": self._parse_txt, ".jsonl": self._parse_jsonl, ".csv": self._parse_csv}[suffix]
        spans = _csv_spans(path) if suffix == ".csv" else _line_spans(path)
        for number, start, raw in spans:
            if not raw.strip():
                continue
            text = _decode(path, number, raw)
            if suffix == ".csv" and self._header is None:
                self._header = self._csv_row(text, number)
                self.columns = list(self._header)
                if check_header is not None:
                    check_header(self.columns)
                continue
            record = self._parse(text, number)
            if not self.starts and suffix == ".jsonl":
                self.columns = list(record)
            check(record, number)
            self.starts.append(start)
            self.ends.append(start + len(raw))
        if not self.starts:
            what = "a header and no rows" if self._header is not None else "no text (it is empty or blank)"
            raise InputError(f"{path}: holds {what}", hint="give at least one example")

    def __len__(self) -> int:
        return len(self.starts)

    def fields(self, start: int, stop: int) -> list[Record]:
        """Records [start, stop), read with one seek (the file was checked while indexing)."""
        if start >= stop:
            return []
        base = self.starts[start]
        with open(self.path, "rb") as f:
            f.seek(base)
            block = f.read(self.ends[stop - 1] - base)
        return [
            self._parse(block[self.starts[i] - base : self.ends[i] - base].decode("utf-8"), 0)
            for i in range(start, stop)
        ]

    def _parse_txt(self, text: str, number: int) -> Record:
        return {"text": text}

    def _parse_jsonl(self, text: str, number: int) -> Record:
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{self.path}: line {number} is not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise InputError(f"{self.path}: line {number}: expected a JSON object, got {type(record).__name__}")
        return record

    def _parse_csv(self, text: str, number: int) -> Record:
        row = self._csv_row(text, number)
        if len(row) != len(self._header):
            raise InputError(f"{self.path}: line {number} has {len(row)} fields, the header {len(self._header)}")
        return dict(zip(self._header, row, strict=True))

    def _csv_row(self, text: str, number: int) -> list[str]:
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise InputError(f"{self.path}: line {number} is not valid CSV ({exc})") from None
        return rows[0] if rows else []
