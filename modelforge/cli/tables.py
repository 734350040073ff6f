"""Tables that stay readable at 80 columns (CI logs, pipes): numbers are never cut, names wrap.

rich shrinks a table that is too wide by cutting cells with "…" (a p50 of "0.8…"). Here every column may wrap
(names fold onto more lines), each column is at least as wide as the longest number in it, and when even that
does not fit, the least important columns are left out, with a line saying which and where they are.
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
# Before any word is folded, a column of long names (paths, node names) keeps at least this many characters:
# other columns are left out first.
NAME_ROOM = 24


def _words(column, numbers_only: bool) -> int:
    words = (word for cell in column._cells for word in _plain(cell).split())
    return max((len(w) for w in words if not numbers_only or NUMBER.fullmatch(w)), default=0)


def _set_min_widths(table: Table, level: int) -> None:
    """level 0: short cells whole; 1: short cells' words whole; 2: only numbers whole. Below level 2, columns
    of long names keep NAME_ROOM characters."""
    for column in table.columns:
        cells = [_plain(cell) for cell in column._cells]
        short = all(len(cell) <= SHORT_CELL for cell in cells)
        if short and level == 0:
            longest = max((len(cell) for cell in cells), default=0)
        elif not short and level < 2:
            longest = max(_words(column, numbers_only=True), NAME_ROOM)
        else:
            longest = _words(column, numbers_only=not short or level == 2)
        column.min_width = longest or None


def whole_numbers(table: Table) -> Table:
    """No cell is cut: every column wraps (long words fold) and is at least as wide as its widest number."""
    for column in table.columns:
        column.no_wrap = False
        column.overflow = "fold"
    _set_min_widths(table, 2)
    return table


def rendered_width(renderable: RenderableType, width: int) -> int:
    """The widest line `renderable` takes when printed at `width` columns (uncropped)."""
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    lines = Segment.split_lines(console.render(renderable, console.options))
    return max((Segment.get_line_length(line) for line in lines), default=0)


def fit(table: Table, width: int, drop_order: Sequence[str] = ()) -> tuple[Table, list[str]]:
    """`table` fitted to `width`, trying in turn: short cells on one line; short cells wrapped at spaces; the
    columns of `drop_order` left out (first named, first dropped); any word folded. Numbers always stay whole.
    Returns the table and the headers left out."""
    whole_numbers(table)
    _set_min_widths(table, 0)
    if rendered_width(table, width) > width:
        _set_min_widths(table, 1)
    dropped: list[str] = []
    for header in drop_order:
        if rendered_width(table, width) <= width:
            break
        index = next((i for i, c in enumerate(table.columns) if str(c.header) == header), None)
        if index is None:
            continue
        del table.columns[index]
        for position, column in enumerate(table.columns):
            column._index = position
        dropped.append(header)
    if rendered_width(table, width) > width:
        _set_min_widths(table, 2)
    return table, dropped


def left_out_note(dropped: list[str], where: str) -> Text | None:
    """The line under a table that lost columns to the terminal's width."""
    if not dropped:
        return None
    return Text(f"({', '.join(dropped)} left out to fit the terminal: {where})", style="dim")
