"""The latency histogram: overlaid per-run distributions of each model, with their p50s marked."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

from modelforge.report.charts.axes import Frame, draw_axes, draw_legend, fmt_num, nice_ticks, series_colors, svg_open


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
    parts = svg_open(
        name="latency-distribution",
        width=width,
        height=height,
        title=title,
        description=("Histogram of per-run latency for each model; dashed lines mark each model's p50."),
    )
    parts += draw_axes(frame, x_ticks, y_ticks, x_label, "share of runs (%)")
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
    parts += draw_legend(frame, [(n, colors[n], "box") for n in names])
    if folded:
        parts.append(
            f'<text class="note-text" data-folded="{folded}" x="{frame.width - frame.right}" y="{frame.top - 2}" '
            f'text-anchor="end">{folded} slower run{"s" if folded > 1 else ""} (up to {fmt_num(float(every.max()))} '
            "ms) in the last bin</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
