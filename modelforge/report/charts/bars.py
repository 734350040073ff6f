"""Horizontal bars, one per item (the time each stage took)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from modelforge.report.charts.axes import SERIES_COLORS, fmt_num, svg_open


def hbars(
    name: str, items: Sequence[tuple[str, float]], *, title: str, unit: str, width: int = 560, bar: int = 22
) -> str:
    """Horizontal bars (e.g. seconds per stage)."""
    height = 44 + len(items) * (bar + 10) + 10
    label_w = min(180, 12 + 7 * max((len(label) for label, _ in items), default=4))
    top = max((v for _, v in items), default=1.0) or 1.0
    parts = svg_open(name, width, height, title, f"{title}, one bar per item.")
    usable = width - label_w - 90
    for i, (label, value) in enumerate(items):
        y = 36 + i * (bar + 10)
        w = max(2.0, value / top * usable)
        parts.append(
            f'<text class="tick" x="{label_w - 8}" y="{y + bar / 2 + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
        parts.append(
            f'<rect data-series="{escape(label)}" data-value="{value:.6g}" x="{label_w}" y="{y}" width="{w:.1f}" '
            f'height="{bar}" rx="3" fill="{SERIES_COLORS[1]}" fill-opacity="0.8"/>'
        )
        parts.append(
            f'<text class="bar-value" x="{label_w + w + 6:.1f}" y="{y + bar / 2 + 4:.1f}">'
            f"{fmt_num(value)} {escape(unit)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
