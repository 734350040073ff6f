"""Inline SVG charts for report.html, drawn in Python: no JavaScript, nothing fetched when the page is viewed.

Every chart is an <svg data-chart="NAME"> whose marks carry data-series / data-value attributes, so tests
(and curious readers of the page source) can check what is drawn against report.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

SERIES_COLORS = ("#64748b", "#4f46e5", "#0891b2", "#d97706", "#db2777", "#16a34a", "#7c3aed")
NAMED_COLORS = {"baseline": "#64748b", "result": "#4f46e5"}
SLO_COLOR = "#dc2626"
GRID = "#e2e8f0"
AXIS = "#94a3b8"


def series_colors(names: Sequence[str]) -> dict[str, str]:
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


def _open(name: str, width: int, height: int, title: str, description: str) -> list[str]:
    return [
        f'<svg class="chart" data-chart="{escape(name)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(description)}</desc>",
        f'<text class="chart-title" x="12" y="20">{escape(title)}</text>',
    ]


def _axes(
    frame: Frame,
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
    x_text: Sequence[str] | None = None,
) -> list[str]:
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


def _legend(frame: Frame, items: Sequence[tuple[str, str, str]]) -> list[str]:
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


def histogram(
    series: dict[str, Sequence[float]],
    *,
    title: str,
    x_label: str = "latency per run (ms)",
    width: int = 560,
    height: int = 280,
    bins: int = 32,
) -> str:
    """Overlaid distributions (share of runs per bin), each model's p50 marked. The x axis ends at 1.5x the
    largest p95, and slower runs are folded into the last bin (and counted in a note), so a few outliers of a
    shared machine do not squash the distribution into one bar."""
    names = [n for n, values in series.items() if len(values)]
    colors = series_colors(names)
    every = np.concatenate([np.asarray(series[n], dtype=float) for n in names]) if names else np.array([0.0])
    p95 = max(float(np.percentile(series[n], 95)) for n in names) if names else 1.0
    lo, hi = float(every.min()), min(float(every.max()), 1.5 * p95)
    if hi <= lo:
        lo, hi = lo * 0.98, (hi or 1.0) * 1.02
    folded = int(np.sum(every > hi))
    lo = max(0.0, lo - (hi - lo) * 0.03)
    edges = np.linspace(lo, hi, bins + 1)
    shares = {}
    for name in names:
        values = np.clip(np.asarray(series[name], dtype=float), lo, hi)
        counts, _ = np.histogram(values, bins=edges)
        shares[name] = counts / max(len(values), 1) * 100
    top = max((float(s.max()) for s in shares.values()), default=1.0) * 1.12
    y_ticks = nice_ticks(0, top, 4)
    x_ticks = [t for t in nice_ticks(lo, hi, 6) if lo <= t <= hi]
    frame = Frame(width, height, lo, hi, 0, y_ticks[-1])
    parts = _open(
        name="latency-distribution",
        width=width,
        height=height,
        title=title,
        description=("Histogram of per-run latency for each model; dashed lines mark each model's p50."),
    )
    parts += _axes(frame, x_ticks, y_ticks, x_label, "share of runs (%)")
    for name in names:
        color = colors[name]
        points = [f"{frame.sx(edges[0]):.1f},{frame.plot_bottom:.1f}"]
        for i, share in enumerate(shares[name]):
            y = frame.sy(float(share))
            points.append(f"{frame.sx(edges[i]):.1f},{y:.1f}")
            points.append(f"{frame.sx(edges[i + 1]):.1f},{y:.1f}")
        points.append(f"{frame.sx(edges[-1]):.1f},{frame.plot_bottom:.1f}")
        parts.append(
            f'<polygon data-series="{escape(name)}" data-runs="{len(series[name])}" points="{" ".join(points)}" '
            f'fill="{color}" fill-opacity="0.28" stroke="{color}" stroke-width="1.4" stroke-linejoin="round"/>'
        )
    for index, name in enumerate(names):
        p50 = float(np.median(series[name]))
        x = frame.sx(min(max(p50, lo), hi))
        parts.append(
            f'<line class="marker" data-series="{escape(name)}" data-value="{p50:.6g}" x1="{x:.1f}" x2="{x:.1f}" '
            f'y1="{frame.top}" y2="{frame.plot_bottom}" stroke="{colors[name]}" stroke-width="1.6" '
            'stroke-dasharray="4 3"/>'
        )
        anchor = "start" if x < frame.width * 0.7 else "end"
        dx = 4 if anchor == "start" else -4
        parts.append(
            f'<text class="marker-label" x="{x + dx:.1f}" y="{frame.top + 12 + 13 * index}" text-anchor="{anchor}" '
            f'fill="{colors[name]}">p50 {fmt_num(p50)} ms</text>'
        )
    parts += _legend(frame, [(n, colors[n], "box") for n in names])
    if folded:
        parts.append(
            f'<text class="note-text" data-folded="{folded}" x="{frame.width - frame.right}" y="{frame.top - 2}" '
            f'text-anchor="end">{folded} slower run{"s" if folded > 1 else ""} (up to {fmt_num(float(every.max()))} '
            "ms) in the last bin</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart(
    name: str,
    x_values: Sequence[int],
    series: dict[str, Sequence[float | None]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    dashed: dict[str, Sequence[float | None]] | None = None,
    dashed_label: str = "",
    threshold: tuple[float, str] | None = None,
    width: int = 560,
    height: int = 280,
) -> str:
    """Values per batch size (log2 x axis); `dashed` adds a second, dashed line per series (e.g. p99) and
    `threshold` a horizontal limit line (e.g. the SLO)."""
    colors = series_colors(list(series))
    values = [v for s in (*series.values(), *(dashed or {}).values()) for v in s if v is not None]
    top = max(values, default=1.0)
    positive = [v for v in values if v > 0]
    log_y = bool(positive) and max(positive) / min(positive) > 30
    limit_note = ""
    if threshold is not None:
        # Draw the limit when it is near the data (a log axis has room for a decade or two more).
        if threshold[0] <= top * (200 if log_y else 2.5):
            top = max(top, threshold[0])
            positive.append(threshold[0])
        else:
            limit_note = f" (above: {fmt_num(threshold[0])})"
    if log_y:
        y_ticks = log_ticks(min(positive), max(positive))
        y_label += " (log scale)"
    else:
        y_ticks = nice_ticks(0, top * 1.08, 5)
    xs = sorted(set(x_values))
    log_x = len(xs) > 1 and xs[0] > 0
    x_lo, x_hi = (xs[0], xs[-1]) if len(xs) > 1 else (xs[0] - 1, xs[0] + 1)
    frame = Frame(width, height, x_lo, x_hi, y_ticks[0], y_ticks[-1], log_x=log_x, log_y=log_y, left=62, right=24)
    parts = _open(name, width, height, title, f"{y_label} per batch size for each model.")
    parts += _axes(frame, xs, y_ticks, x_label, y_label, [str(x) for x in xs])
    legend: list[tuple[str, str, str]] = []
    for label, style, data in (("", "line", series), (dashed_label, "dash", dashed or {})):
        for sname, ys in data.items():
            color = colors.get(sname, SERIES_COLORS[0])
            pts = [(frame.sx(x), frame.sy(y), x, y) for x, y in zip(x_values, ys, strict=True) if y is not None]
            if not pts:
                continue
            dash = ' stroke-dasharray="6 4"' if style == "dash" else ""
            path = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py, _, _) in enumerate(pts))
            parts.append(
                f'<path data-series="{escape(sname)}{" " + label if label else ""}" d="{path}" fill="none" '
                f'stroke="{color}" stroke-width="2.2"{dash} stroke-linejoin="round"/>'
            )
            for px, py, x, y in pts:
                radius = 2.6 if style == "dash" else 3.6
                parts.append(
                    f'<circle data-series="{escape(sname)}{" " + label if label else ""}" data-x="{x}" '
                    f'data-value="{y:.6g}" cx="{px:.1f}" cy="{py:.1f}" r="{radius}" fill="{"#fff" if dash else color}"'
                    f' stroke="{color}" stroke-width="1.6"><title>{escape(sname)} {escape(label)} batch {x}: '
                    f"{fmt_num(y)}</title></circle>"
                )
            legend.append((f"{sname} {label}".strip(), color, style))
    if threshold is not None:
        legend.append((threshold[1] + limit_note, SLO_COLOR, "dash"))
        if not limit_note:
            y = frame.sy(threshold[0])
            parts.append(
                f'<line class="threshold" data-value="{threshold[0]:.6g}" x1="{frame.left}" '
                f'x2="{frame.width - frame.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{SLO_COLOR}" '
                'stroke-width="1.5" stroke-dasharray="3 3"/>'
            )
    parts += _legend(frame, legend)
    parts.append("</svg>")
    return "\n".join(parts)


@dataclass
class Point:
    name: str
    x: float  # latency (ms)
    y: float  # accuracy or agreement (%)
    size: float  # bytes
    label: str


def tradeoff_scatter(
    points: Sequence[Point], *, title: str, x_label: str, y_label: str, width: int = 560, height: int = 300
) -> str:
    """Accuracy (y) vs latency (x), bubble area proportional to model size; an arrow from the first point
    (the baseline) to the others."""
    colors = series_colors([p.name for p in points])
    xs, ys = [p.x for p in points], [p.y for p in points]
    x_pad = max((max(xs) - min(xs)) * 0.9, max(xs) * 0.25) if xs else 1.0
    x_lo, x_hi = (max(0.0, min(xs) - x_pad), max(xs) + x_pad) if xs else (0.0, 1.0)
    spread = max(ys) - min(ys) if ys else 0
    pad = max(spread * 0.6, 0.5)
    y_lo, y_hi = max(0.0, min(ys) - pad), min(100.0, max(ys) + pad) if ys else 100.0
    if y_hi <= y_lo:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    y_ticks = [t for t in nice_ticks(y_lo, y_hi, 4)]
    x_ticks = nice_ticks(x_lo, x_hi, 5)
    frame = Frame(width, height, x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1], left=62, right=24, top=34)
    parts = _open(
        "accuracy-size-speed",
        width,
        height,
        title,
        "Each model as a bubble: x is its p50 latency, y its accuracy, the bubble's area its file size.",
    )
    parts.append(
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{AXIS}"/></marker></defs>'
    )
    parts += _axes(frame, x_ticks, y_ticks, x_label, y_label)
    biggest = max((p.size for p in points), default=1) or 1
    radius = {p.name: 8 + 22 * math.sqrt(p.size / biggest) for p in points}
    if len(points) > 1:
        first = points[0]
        for other in points[1:]:
            x1, y1, x2, y2 = frame.sx(first.x), frame.sy(first.y), frame.sx(other.x), frame.sy(other.y)
            length = math.hypot(x2 - x1, y2 - y1)
            if length > radius[first.name] + radius[other.name] + 4:
                ux, uy = (x2 - x1) / length, (y2 - y1) / length
                parts.append(
                    f'<line x1="{x1 + ux * radius[first.name]:.1f}" y1="{y1 + uy * radius[first.name]:.1f}" '
                    f'x2="{x2 - ux * (radius[other.name] + 3):.1f}" y2="{y2 - uy * (radius[other.name] + 3):.1f}" '
                    f'stroke="{AXIS}" stroke-width="1.5" marker-end="url(#arrow)"/>'
                )
    for p in points:
        cx, cy, r = frame.sx(p.x), frame.sy(p.y), radius[p.name]
        parts.append(
            f'<circle data-series="{escape(p.name)}" data-x="{p.x:.6g}" data-value="{p.y:.6g}" '
            f'data-size="{int(p.size)}" cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{colors[p.name]}" '
            f'fill-opacity="0.35" stroke="{colors[p.name]}" stroke-width="1.8"/>'
        )
        # Labels point away from the other bubbles: the leftmost to the left, the others to the right.
        leftmost = p.x == min(xs) and len(points) > 1
        anchor, dx = ("end", -(r + 6)) if leftmost else ("start", r + 6)
        if cx + dx - 90 < frame.left and anchor == "end":
            anchor, dx = "start", r + 6
        parts.append(
            f'<text class="point-label" x="{cx + dx:.1f}" y="{cy - 2:.1f}" text-anchor="{anchor}">'
            f"{escape(p.name)}</text>"
            f'<text class="point-sub" x="{cx + dx:.1f}" y="{cy + 11:.1f}" text-anchor="{anchor}">'
            f"{escape(p.label)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def hbars(
    name: str, items: Sequence[tuple[str, float]], *, title: str, unit: str, width: int = 560, bar: int = 22
) -> str:
    """Horizontal bars (e.g. seconds per stage)."""
    height = 44 + len(items) * (bar + 10) + 10
    label_w = min(180, 12 + 7 * max((len(label) for label, _ in items), default=4))
    top = max((v for _, v in items), default=1.0) or 1.0
    parts = _open(name, width, height, title, f"{title}, one bar per item.")
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
