"""Tables that stay readable at 80 columns (CI logs, pipes): numbers are never cut, names wrap.

rich shrinks a table that is too wide by cutting cells with "…" (a p50 of "0.8…"). Here every column may wrap
(names fold onto more lines), each column is at least as wide as the longest number in it, and when even that
does not fit, the least important columns are left out, with a line saying which and where they are; on a
terminal too narrow for the numbers side by side, each row is stacked, a line per cell.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from rich.console import Console, RenderableType
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

# A number as the tables print it: 0.019, -0.00, 1,234, 1e-05, 1.00x, 98.89%, +0.25.
NUMBER = re.compile(r"[-+]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?[x%]?")


def _plain(cell: RenderableType) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        try:
            return Text.from_markup(cell).plain
        except Exception:  # not markup after all: the text as it is
            return cell
    return ""


# A column whose cells are all this short (a runtime, a size, "1.00x faster") is kept on one line if it fits.
SHORT_CELL = 16
# Names (paths, node names) up to this long are kept whole while other columns can be left out; then a
# column of names keeps at least NAME_ROOM characters a line before any other word is folded.
NAME_WHOLE = 40
NAME_ROOM = 24


def _words(column, numbers_only: bool) -> int:
    words = (word for cell in column._cells for word in _plain(cell).split())
    return max((len(w) for w in words if not numbers_only or NUMBER.fullmatch(w)), default=0)


def _set_min_widths(table: Table, short: str, names: str) -> None:
    """How much each column keeps on a line. short (columns of short cells): "cells" whole, "words" whole or
    "numbers" whole; names (columns of long text): "words" (up to NAME_WHOLE), "room" (NAME_ROOM) or "numbers"."""
    for column in table.columns:
        cells = [_plain(cell) for cell in column._cells]
        numbers = _words(column, numbers_only=True)
        if all(len(cell) <= SHORT_CELL for cell in cells):
            if short == "cells":
                longest = max((len(cell) for cell in cells), default=0)
            else:
                longest = _words(column, numbers_only=short == "numbers")
        elif names == "words":
            longest = max(min(_words(column, numbers_only=False), NAME_WHOLE), numbers)
        else:
            longest = max(NAME_ROOM if names == "room" else 0, numbers)
        column.min_width = longest or None


def _wrap_saving(column) -> int:
    """Columns a short column saves when its cells and header wrap at spaces (0 for columns of long text)."""
    cells = [_plain(cell) for cell in column._cells]
    if not cells or any(len(cell) > SHORT_CELL for cell in cells):
        return 0
    return max(len(text) for text in [*cells, _plain(column.header)]) - _wrapped_width(column)


def _wrapped_width(column) -> int:
    header = max((len(word) for word in _plain(column.header).split()), default=0)
    return max(_words(column, numbers_only=False), header)


def whole_numbers(table: Table) -> Table:
    """No cell is cut: every column wraps (long words fold) and is at least as wide as its widest number."""
    for column in table.columns:
        column.no_wrap = False
        column.overflow = "fold"
    _set_min_widths(table, "numbers", "numbers")
    return table


def rendered_width(renderable: RenderableType, width: int) -> int:
    """The widest line `renderable` takes when printed at `width` columns (uncropped)."""
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    lines = Segment.split_lines(console.render(renderable, console.options))
    return max((Segment.get_line_length(line) for line in lines), default=0)


def fit(table: Table, width: int, drop_order: Sequence[str] = ()) -> tuple[Table, list[str]]:
    """`table` fitted to `width`, trying in turn: short cells on one line; short cells free to wrap at spaces;
    short columns made to wrap, one at a time; the columns of `drop_order` left out (first named, first dropped)
    to keep names whole; names folded; any word folded; at last every row stacked, a line per cell. Numbers
    always stay whole. Returns the table and the headers left out."""
    whole_numbers(table)
    columns = list(table.columns)

    def fits() -> bool:
        return rendered_width(table, width) <= width

    _set_min_widths(table, "cells", "words")
    if not fits():
        _set_min_widths(table, "words", "words")
    # rich shrinks the widest column first (the names, held by their minimum): wrap the short cells that
    # save most ("95.44 KiB" on two lines) one column at a time, until the table fits.
    for column in sorted(table.columns, key=_wrap_saving, reverse=True):
        if fits() or not _wrap_saving(column):
            break
        column.min_width = column.max_width = _wrapped_width(column)
    dropped: list[str] = []
    for header in drop_order:
        if fits():
            break
        index = next((i for i, c in enumerate(table.columns) if str(c.header) == header), None)
        if index is None:
            continue
        del table.columns[index]
        for position, column in enumerate(table.columns):
            column._index = position
        dropped.append(header)
    for short, names in (("words", "room"), ("numbers", "numbers")):
        if fits():
            break
        _set_min_widths(table, short, names)
    if not fits():  # too narrow for the numbers side by side: one "header value" line per cell, all columns
        return whole_numbers(_stacked(table, columns)), []
    return table, dropped


def _stacked(table: Table, columns: list) -> Table:
    """The rows of `table` one under the other, a line per (non-empty) cell: fits where side by side cannot."""
    from rich import box

    stacked = Table(title=table.title, caption=table.caption, show_header=False, box=box.SIMPLE, pad_edge=False)
    stacked.add_column("field", style="bold")
    stacked.add_column("value", justify="right")
    rows = max((len(column._cells) for column in columns), default=0)
    for index in range(rows):
        for column in columns:
            cell = column._cells[index] if index < len(column._cells) else ""
            if _plain(cell).strip():
                stacked.add_row(column.header, cell)
        stacked.add_section()
    return stacked


def left_out_note(dropped: list[str], where: str) -> Text | None:
    """The line under a table that lost columns to the terminal's width."""
    if not dropped:
        return None
    return Text(f"({', '.join(dropped)} left out to fit the terminal: {where})", style="dim")
