"""The accuracy vs size vs speed scatter: one bubble per model, an arrow from the baseline to the result."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from modelforge.report.charts.axes import AXIS, Frame, draw_axes, nice_ticks, series_colors, svg_open


@dataclass
class Point:
    """One model on the scatter."""

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
    parts = svg_open(
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
    parts += draw_axes(frame, x_ticks, y_ticks, x_label, y_label)
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
