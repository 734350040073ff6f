"""What every chart shares: series colours, tick values and their labels, the plot frame (linear or log scales),
and the SVG opening, axes and legend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

SERIES_COLORS = ("#64748b", "#4f46e5", "#0891b2", "#d97706", "#db2777", "#16a34a", "#7c3aed")
NAMED_COLORS = {"baseline": "#64748b", "result": "#4f46e5"}
SLO_COLOR = "#dc2626"
GRID = "#e2e8f0"
AXIS = "#94a3b8"


def series_colors(names: Sequence[str]) -> dict[str, str]:
    """A colour per series; baseline and result keep theirs in every chart and table of the page."""
    colors, spare = {}, iter(c for c in SERIES_COLORS if c not in NAMED_COLORS.values())
    for name in names:
        colors[name] = NAMED_COLORS.get(name) or next(spare, SERIES_COLORS[0])
    return colors


def fmt_num(value: float) -> str:
    """Compact tick / label text: 0.0153, 1.5, 230, 12.3k."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def tick_texts(ticks: Sequence[float]) -> list[str]:
    """Labels with as many decimals as the tick step needs (98.25 stays 98.25), thousands as k."""
    if max((abs(t) for t in ticks), default=0) >= 1000:
        return [fmt_num(t) for t in ticks]
    for decimals in range(7):
        if all(abs(round(t, decimals) - t) < 1e-9 * max(1.0, abs(t)) for t in ticks):
            return [f"{t:.{decimals}f}" for t in ticks]
    return [fmt_num(t) for t in ticks]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= step * mult:
            step *= mult
            break
    start = math.floor(lo / step) * step
    ticks, value = [], start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 12))
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade covering [lo, hi] (lo > 0); fewer per decade when the range is wide."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = (1, 2, 5) if last - first <= 3 else (1,)
    ticks = [m * 10.0**e for e in range(first, last + 1) for m in steps]
    below = [t for t in ticks if t <= lo]
    above = [t for t in ticks if t >= hi]
    start = below[-1] if below else ticks[0]
    end = above[0] if above else ticks[-1]
    return [t for t in ticks if start <= t <= end]


@dataclass
class Frame:
    """Plot area inside an SVG of `width` x `height`, with linear (or log2 for x) scales."""

    width: int
    height: int
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    left: int = 58
    right: int = 18
    top: int = 48
    bottom: int = 46
    log_x: bool = False
    log_y: bool = False

    def _tx(self, x: float) -> float:
        return math.log2(x) if self.log_x else x

    def _ty(self, y: float) -> float:
        return math.log10(max(y, 1e-12)) if self.log_y else y

    def sx(self, x: float) -> float:
        lo, hi = self._tx(self.x_lo), self._tx(self.x_hi)
        span = (hi - lo) or 1.0
        return self.left + (self._tx(x) - lo) / span * (self.width - self.left - self.right)

    def sy(self, y: float) -> float:
        lo, hi = self._ty(self.y_lo), self._ty(self.y_hi)
        span = (hi - lo) or 1.0
        return self.height - self.bottom - (self._ty(y) - lo) / span * (self.height - self.top - self.bottom)

    @property
    def plot_bottom(self) -> float:
        return self.height - self.bottom


def svg_open(name: str, width: int, height: int, title: str, description: str) -> list[str]:
    """The <svg data-chart=NAME> opening tag with its accessible title and description, and the visible title."""
    return [
        f'<svg class="chart" data-chart="{escape(name)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(description)}</desc>",
        f'<text class="chart-title" x="12" y="20">{escape(title)}</text>',
    ]


def draw_axes(
    frame: Frame,
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
    x_text: Sequence[str] | None = None,
) -> list[str]:
    """Grid lines and tick labels on y, ticks on x (`x_text` overrides their labels), the base line, axis labels."""
    parts = []
    y_text = [fmt_num(t) for t in y_ticks] if frame.log_y else tick_texts(y_ticks)
    for tick, text in zip(y_ticks, y_text, strict=True):
        y = frame.sy(tick)
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        parts.append(f'<text class="tick" x="{frame.left - 6}" y="{y + 3.5:.1f}" text-anchor="end">{text}</text>')
    labels = x_text or tick_texts(x_ticks)
    for tick, text in zip(x_ticks, labels, strict=True):
        x = frame.sx(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.plot_bottom}" y2="{frame.plot_bottom + 4}" stroke="{AXIS}"/>'
        )
        parts.append(f'<text class="tick" x="{x:.1f}" y="{frame.plot_bottom + 16}" text-anchor="middle">{text}</text>')
    parts.append(
        f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{frame.plot_bottom}" '
        f'y2="{frame.plot_bottom}" stroke="{AXIS}"/>'
    )
    mid_x = (frame.left + frame.width - frame.right) / 2
    parts.append(
        f'<text class="axis-label" x="{mid_x:.1f}" y="{frame.height - 8}" text-anchor="middle">{escape(x_label)}</text>'
    )
    mid_y = (frame.top + frame.plot_bottom) / 2
    parts.append(
        f'<text class="axis-label" transform="translate(14 {mid_y:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return parts


def draw_legend(frame: Frame, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Items (label, color, style) in a row under the title; style: box | line | dash."""
    parts, x, y = [], 12, 36
    for label, color, style in items:
        if style == "box":
            parts.append(
                f'<rect x="{x}" y="{y - 9}" width="11" height="11" rx="2" fill="{color}" fill-opacity="0.75"/>'
            )
        else:
            dash = ' stroke-dasharray="5 3"' if style == "dash" else ""
            parts.append(
                f'<line x1="{x}" x2="{x + 16}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" stroke-width="2.2"{dash}/>'
            )
        parts.append(f'<text class="legend" x="{x + 20}" y="{y}">{escape(label)}</text>')
        x += 20 + int(6.2 * len(label)) + 16
    return parts
