"""The line chart over batch sizes (log2 x axis): latency or throughput per model, with an optional dashed
second statistic (p99) and a threshold line (the SLO)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from modelforge.report.charts.axes import (
    SERIES_COLORS,
    SLO_COLOR,
    Frame,
    draw_axes,
    draw_legend,
    fmt_num,
    log_ticks,
    nice_ticks,
    series_colors,
    svg_open,
)


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
    parts = svg_open(name, width, height, title, f"{y_label} per batch size for each model.")
    parts += draw_axes(frame, xs, y_ticks, x_label, y_label, [str(x) for x in xs])
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
    parts += draw_legend(frame, legend)
    parts.append("</svg>")
    return "\n".join(parts)
