"""Scatter charts: accuracy vs size vs speed (one bubble per model, an arrow from the baseline to the result),
and the Pareto chart of an optimize search (bubble AREA proportional to size, the front connected, the SLO)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from modelforge.report.charts.axes import (
    AXIS,
    SLO_COLOR,
    Frame,
    draw_axes,
    draw_legend,
    nice_ticks,
    series_colors,
    svg_open,
)


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


# How each kind of mark is drawn on the Pareto chart: fill, fill opacity, stroke, stroke width.
MARK_STYLES = {
    "winner": ("#16a34a", 0.55, "#15803d", 2.6),
    "finalist": ("#4f46e5", 0.35, "#4f46e5", 1.6),
    "lost": ("#cbd5e1", 0.45, "#94a3b8", 1.0),
    "baseline": ("#64748b", 0.18, "#334155", 1.8),
}
FRONT_COLOR = "#0f172a"


@dataclass
class Mark:
    """One candidate on an area scatter: `status` picks its style (MARK_STYLES), `front` rings it."""

    name: str
    x: float
    y: float | None  # None: not measured on y (a rug tick along the x axis instead of a bubble)
    size: float | None  # bytes; None draws the smallest bubble
    status: str
    front: bool = False
    label: str = ""  # the hover text (an SVG <title>)


def _radii(marks: Sequence[Mark], r_max: float, r_min: float) -> dict[int, float]:
    """Bubble radii with AREA proportional to size (r ~ sqrt(size)); the smallest are held at r_min to stay
    visible, which the chart's description says."""
    biggest = max((m.size or 0 for m in marks), default=0) or 1
    return {id(m): max(r_min, r_max * math.sqrt((m.size or 0) / biggest)) for m in marks}


def pareto_scatter(
    marks: Sequence[Mark],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_limit: tuple[float, str] | None = None,
    y_limit: tuple[float, str] | None = None,
    name: str = "pareto",
    width: int = 1080,
    height: int = 420,
) -> str:
    """Candidates as bubbles (x latency, y accuracy, area = size), styled by status; the marks with `front`
    connected by a line and ringed; `x_limit` a vertical line (the SLO) and `y_limit` a horizontal one (the
    accuracy gate), each with its label. Marks without y are drawn as ticks on the x axis."""
    bubbles = [m for m in marks if m.y is not None]
    rug = [m for m in marks if m.y is None]
    xs = [m.x for m in marks] + ([x_limit[0]] if x_limit else [])
    ys = [m.y for m in bubbles if m.y is not None] + ([y_limit[0]] if y_limit else [])
    x_ticks = nice_ticks(0.0, max(xs) * 1.08 if xs else 1.0, 6)
    spread = (max(ys) - min(ys)) if ys else 0.0
    pad = max(spread * 0.15, 0.5)
    y_lo, y_hi = (max(0.0, min(ys) - pad), min(100.0, max(ys) + pad)) if ys else (0.0, 100.0)
    if y_hi <= y_lo:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    y_ticks = nice_ticks(y_lo, y_hi, 5)
    frame = Frame(width, height, x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1], left=62, right=28, top=52)
    parts = svg_open(
        name,
        width,
        height,
        title,
        "Each candidate as a bubble: x its p99 latency, y its accuracy, the bubble's AREA its file size (the "
        "smallest held at a visible minimum). The Pareto front is connected; grey bubbles lost; ticks on the x "
        "axis were screened out by latency before any training.",
    )
    parts += draw_axes(frame, x_ticks, y_ticks, x_label, y_label)
    legend = [
        ("winner", MARK_STYLES["winner"][0], "box"),
        ("finalist", MARK_STYLES["finalist"][0], "box"),
        ("lost", MARK_STYLES["lost"][2], "box"),
        ("baseline", MARK_STYLES["baseline"][0], "box"),
        ("Pareto front", FRONT_COLOR, "line"),
    ]
    if x_limit:
        legend.append((x_limit[1], SLO_COLOR, "dash"))
    parts += draw_legend(frame, legend)
    top, bottom = frame.top, frame.plot_bottom
    if x_limit:
        x = frame.sx(x_limit[0])
        parts.append(
            f'<line data-limit="x" data-value="{x_limit[0]:.6g}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
            f'y2="{bottom}" stroke="{SLO_COLOR}" stroke-width="1.6" stroke-dasharray="6 4"/>'
            f'<text class="marker-label" x="{x + 5:.1f}" y="{top + 12}" fill="{SLO_COLOR}">'
            f"{escape(x_limit[1])}</text>"
        )
    if y_limit:
        y = frame.sy(y_limit[0])
        parts.append(
            f'<line data-limit="y" data-value="{y_limit[0]:.6g}" x1="{frame.left}" x2="{width - frame.right}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="{SLO_COLOR}" stroke-width="1.2" stroke-dasharray="2 3"/>'
            f'<text class="marker-label" x="{width - frame.right - 4}" y="{y - 5:.1f}" text-anchor="end" '
            f'fill="{SLO_COLOR}">{escape(y_limit[1])}</text>'
        )
    front = sorted((m for m in bubbles if m.front), key=lambda m: m.x)
    if len(front) > 1:
        points = " ".join(f"{frame.sx(m.x):.1f},{frame.sy(m.y or 0):.1f}" for m in front)
        parts.append(
            f'<polyline data-front="{len(front)}" points="{points}" fill="none" stroke="{FRONT_COLOR}" '
            'stroke-width="1.4" stroke-opacity="0.7"/>'
        )
    radius = _radii(bubbles, r_max=26.0, r_min=4.0)
    # Big bubbles first so small ones stay on top; the winner and baseline last of all.
    order = sorted(bubbles, key=lambda m: (m.status in ("winner", "baseline"), -(m.size or 0)))
    for m in order:
        fill, opacity, stroke, stroke_w = MARK_STYLES.get(m.status, MARK_STYLES["lost"])
        cx, cy, r = frame.sx(m.x), frame.sy(m.y or 0), radius[id(m)]
        dash = ' stroke-dasharray="3 2"' if m.status == "baseline" else ""
        parts.append(
            f'<circle data-series="{escape(m.name)}" data-status="{escape(m.status)}" '
            f'data-front="{str(m.front).lower()}" data-x="{m.x:.6g}" data-value="{m.y:.6g}" '
            f'data-size="{int(m.size or 0)}" cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{fill}" '
            f'fill-opacity="{opacity}" stroke="{FRONT_COLOR if m.front else stroke}" '
            f'stroke-width="{stroke_w + (0.6 if m.front else 0):.1f}"{dash}>'
            f"<title>{escape(m.label or m.name)}</title></circle>"
        )
        if m.status == "baseline":  # under its bubble: the winner may sit on it (the original can win)
            parts.append(
                f'<text class="point-sub" x="{cx:.1f}" y="{min(cy + r + 13, bottom - 3):.1f}" '
                f'text-anchor="middle">baseline</text>'
            )
        elif m.status == "winner":
            text = f"winner: {m.name}"
            # To the right of the bubble, or to its left where the text would leave the chart.
            right = cx + r + 5 + 7 * len(text) <= width - frame.right
            x, anchor = (cx + r + 5, "start") if right else (cx - r - 5, "end")
            parts.append(
                f'<text class="point-label" x="{x:.1f}" y="{cy + 4:.1f}" text-anchor="{anchor}">{escape(text)}</text>'
            )
    for m in rug:
        x = frame.sx(m.x)
        parts.append(
            f'<line data-series="{escape(m.name)}" data-status="screened" data-x="{m.x:.6g}" x1="{x:.1f}" '
            f'x2="{x:.1f}" y1="{bottom - 9}" y2="{bottom}" stroke="{MARK_STYLES["lost"][2]}" stroke-width="2">'
            f"<title>{escape(m.label or m.name)}</title></line>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
