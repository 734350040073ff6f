"""Table cells and small formatted values shared by every HTML section; cells carry data-metric / data-value
attributes so tests can check the page against report.json."""

from __future__ import annotations

from html import escape
from typing import Any


def data_value(value: Any) -> str:
    """Raw value for data-value attributes ('' when missing)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:.10g}"
    return escape(str(value))


def html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """`rows` hold ready HTML for each cell."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def td(text: str, metric: str | None = None, value: Any = None, cls: str = "") -> str:
    """A cell of escaped text; with `metric`, tagged data-metric / data-value (the raw `value`) for checks."""
    attrs = f' data-metric="{escape(metric)}" data-value="{data_value(value)}"' if metric else ""
    klass = f' class="{cls}"' if cls else ""
    return f"<td{attrs}{klass}>{escape(text)}</td>"


def pill(passed: bool | None, yes: str = "PASSED", no: str = "FAILED") -> str:
    """A verdict badge; None reads 'not measured'."""
    if passed is None:
        return '<span class="pill info">not measured</span>'
    return f'<span class="pill {"pass" if passed else "fail"}">{yes if passed else no}</span>'


def fmt_ms(value: float | None) -> str:
    """Milliseconds with enough decimals for sub-0.1 ms models."""
    return "n/a" if value is None else (f"{value:.4f} ms" if value < 0.1 else f"{value:.3f} ms")


def fmt_rate(value: float | None) -> str:
    """Samples (or runs) per second."""
    return "n/a" if value is None else f"{value:,.0f} /s"
