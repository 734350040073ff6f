"""The cascade's report: the whole curve (accuracy vs mean latency, with the escalation share), the chosen point
marked, both single models on the same chart; in HTML (inline SVG) and Markdown. Read from report.json's plain
`cascade` dict only (report/ knows nothing of cascade/).

The curve's accuracy is exact at every threshold; its mean latency is measured on the cascade graph at a few
thresholds and drawn between them by escalation share (the measured points are the filled circles).
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from modelforge.report.charts.axes import AXIS, SLO_COLOR, Frame, draw_axes, draw_legend, fmt_num, nice_ticks, svg_open

CURVE_COLOR, SMALL_COLOR, LARGE_COLOR, MEASURED_COLOR = "#4f46e5", "#d97706", "#64748b", "#0891b2"


def _quality(point: dict[str, Any]) -> float:
    value = point.get("accuracy")
    return 100 * (value if value is not None else point["agreement_large"])


def curve_latency(cascade: dict[str, Any]) -> list[tuple[float, float, dict[str, Any]]]:
    """(mean ms, accuracy %, point) for every curve point, latency interpolated by escalation share."""
    measured = sorted(
        (p["escalated_share"], m["mean_ms"])
        for m in cascade["latency"]["cascade"]
        for p in [_point_at(cascade, m["threshold"])]
        if p is not None
    )
    if not measured:
        return []
    shares, means = np.array([m[0] for m in measured]), np.array([m[1] for m in measured])
    return [(float(np.interp(p["escalated_share"], shares, means)), _quality(p), p) for p in cascade["curve"]]


def _point_at(cascade: dict[str, Any], threshold: float) -> dict[str, Any] | None:
    if cascade["chosen"]["threshold"] == threshold:
        return cascade["chosen"]
    return next((p for p in cascade["curve"] if p["threshold"] == threshold), None)


def cascade_chart(cascade: dict[str, Any], width: int = 620, height: int = 320) -> str:
    labelled = cascade["chosen"].get("accuracy") is not None
    y_name = "accuracy (%)" if labelled else "agreement with the large model (%)"
    curve = curve_latency(cascade)
    small, large, chosen = cascade["small"], cascade["large"], cascade["chosen"]
    singles = [
        ("small model", small["mean_ms"], 100 * small["accuracy"] if labelled else None, SMALL_COLOR),
        ("large model", large["mean_ms"], 100 * large["accuracy"] if labelled else 100.0, LARGE_COLOR),
    ]
    measured = [
        (m["mean_ms"], _quality(p), p)
        for m in cascade["latency"]["cascade"]
        for p in [_point_at(cascade, m["threshold"])]
        if p is not None
    ]
    xs = [c[0] for c in curve] + [s[1] for s in singles] + [m[0] for m in measured]
    ys = [c[1] for c in curve] + [s[2] for s in singles if s[2] is not None] + [m[1] for m in measured]
    x_ticks = nice_ticks(0.0, max(xs) * 1.08 if xs else 1.0, 5)
    y_lo = max(0.0, min(ys) - 2) if ys else 0.0
    y_ticks = nice_ticks(y_lo, min(100.0, max(ys) + 1) if ys else 100.0, 5)
    frame = Frame(width, height, x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1], left=62, right=24, top=52)
    parts = svg_open(
        "cascade-curve",
        width,
        height,
        f"Cascade: {y_name.split(' (')[0]} vs mean latency (batch {cascade['latency']['batch_size']})",
        "Each threshold of the small model's confidence as a point of the cascade: x its mean latency, y its "
        "accuracy; the escalation share in each point's title. The chosen threshold is marked.",
    )
    parts += draw_axes(frame, x_ticks, y_ticks, "mean latency (ms)", y_name)
    if curve:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{frame.sx(x):.1f},{frame.sy(y):.1f}" for i, (x, y, _) in enumerate(curve)
        )
        parts.append(f'<path data-series="cascade" d="{path}" fill="none" stroke="{CURVE_COLOR}" stroke-width="2"/>')
    for x, y, p in measured:
        parts.append(
            f'<circle data-series="measured" data-x="{x:.6g}" data-value="{y:.6g}" cx="{frame.sx(x):.1f}" '
            f'cy="{frame.sy(y):.1f}" r="4" fill="{MEASURED_COLOR}"><title>threshold {p["threshold"]:.4g}: '
            f"{100 * p['escalated_share']:.1f}% escalated, {fmt_num(y)}%, {fmt_num(x)} ms</title></circle>"
        )
    for name, x, y, color in singles:
        if y is None:
            continue
        parts.append(
            f'<rect data-series="{escape(name)}" data-x="{x:.6g}" data-value="{y:.6g}" x="{frame.sx(x) - 6:.1f}" '
            f'y="{frame.sy(y) - 6:.1f}" width="12" height="12" fill="{color}"><title>{escape(name)}: {fmt_num(y)}%, '
            f"{fmt_num(x)} ms</title></rect>"
        )
    cx, cy = frame.sx(chosen["mean_ms"]), frame.sy(_quality(chosen))
    parts.append(
        f'<circle data-series="chosen" data-x="{chosen["mean_ms"]:.6g}" data-value="{_quality(chosen):.6g}" '
        f'cx="{cx:.1f}" cy="{cy:.1f}" r="8" fill="none" stroke="{SLO_COLOR}" stroke-width="2.5"><title>chosen: '
        f"threshold {chosen['threshold']:.4g}, {100 * chosen['escalated_share']:.1f}% escalated</title></circle>"
        f'<text class="point-label" x="{cx + 11:.1f}" y="{cy - 8:.1f}" fill="{AXIS}">chosen '
        f"({100 * chosen['escalated_share']:.0f}% escalated)</text>"
    )
    parts += draw_legend(
        frame,
        [
            ("cascade (by threshold)", CURVE_COLOR, "line"),
            ("measured", MEASURED_COLOR, "box"),
            ("small", SMALL_COLOR, "box"),
            ("large", LARGE_COLOR, "box"),
            ("chosen", SLO_COLOR, "line"),
        ],
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def measured_rows(cascade: dict[str, Any]) -> list[tuple[str, ...]]:
    """(model, threshold, escalated, accuracy, mean ms, p99 ms, throughput/s) rows: both models and every
    measured threshold of the cascade."""
    rows = []
    for name in ("small", "large"):
        m = cascade[name]
        rows.append(
            (
                f"{name} model",
                "",
                "",
                _pct(m.get("accuracy")),
                f"{m['mean_ms']:.3f}",
                f"{m['p99_ms']:.3f}",
                f"{m['throughput_per_s']:.0f}",
            )
        )
    for m in sorted(cascade["latency"]["cascade"], key=lambda m: m["threshold"]):
        p = _point_at(cascade, m["threshold"]) or {}
        mark = " (chosen)" if m["threshold"] == cascade["chosen"]["threshold"] else ""
        rows.append(
            (
                f"cascade{mark}",
                f"{m['threshold']:.4g}",
                _pct(p.get("escalated_share")),
                _pct(p.get("accuracy")),
                f"{m['mean_ms']:.3f}",
                f"{m['p99_ms']:.3f}",
                f"{m['throughput_per_s']:.0f}",
            )
        )
    return rows


HEADER = ("Model", "Threshold", "Escalated", "Accuracy", "Mean ms", "p99 ms", "Samples/s")


def render_cascade_markdown(report: dict[str, Any]) -> str:
    from modelforge.report.format import md_table, summary_rows

    c = report["cascade"]
    chosen = c["chosen"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [
        f"# modelforge cascade: {verdict}",
        "",
        f"Small `{c['small']['path']}` answers; large `{c['large']['path']}` takes the rows whose {c['confidence']} "
        f"confidence is below **{chosen['threshold']:.4g}** ({100 * chosen['escalated_share']:.1f}% of the eval "
        f"data). Rule: {c['rule_detail']}.",
        "",
        *md_table(("Metric", "Large model", "Cascade", "Change"), summary_rows(report["summary"])),
        "",
        f"Latency measured on the cascade graph at batch {c['latency']['batch_size']}, interleaved with both models "
        f"(speed-up = large mean / cascade mean; {c['latency']['cascade'][0]['runs']} runs each over "
        f"{c['latency'].get('batches', '?')} batches, stopped: {c['latency']['stopped']}).",
        "",
        *md_table(HEADER, measured_rows(c)),
        "",
        f"Checked row by row on onnxruntime: {c['check']['rows']} rows, {c['check']['escalation_mismatches']} "
        f"escalation mismatches, max |diff| {c['check']['max_abs_diff']:.3g}"
        + (
            f"; OpenVINO IR: {c['check']['openvino']['escalation_mismatches']} mismatches, max |diff| "
            f"{c['check']['openvino']['max_abs_diff_vs_onnxruntime']:.3g}"
            if c["check"].get("openvino")
            else ""
        )
        + ".",
    ]
    for gate in report["gates"]:
        lines.append(
            f"Gate {gate['name']}: {gate['value']} vs {gate['threshold']}: {'passed' if gate['passed'] else 'FAILED'}."
        )
    return "\n".join(lines) + "\n"


def cascade_section(report: dict[str, Any]) -> str:
    """The chart and the measured table; empty for reports of other commands."""
    c = report.get("cascade")
    if not c:
        return ""
    from modelforge.report.html_cells import html_table, td

    rows = [[td(cell) for cell in row] for row in measured_rows(c)]
    return (
        '<section id="cascade"><h2>Cascade</h2>'
        f"<p>The small model answers; rows whose {escape(c['confidence'])} confidence is below the threshold go to "
        f"the large model. Chosen: threshold {c['chosen']['threshold']:.4g} ({escape(c['rule_detail'])}); the "
        f"graph input <code>{escape(c['threshold_input'])}</code> moves it without a rebuild.</p>"
        f"{cascade_chart(c)}{html_table(list(HEADER), rows)}</section>"
    )


def render_cascade_html(report: dict[str, Any]) -> str:
    from modelforge.report.html_details import machine_section
    from modelforge.report.html_overview import gates_section, kpi_cards, page_header, summary_section
    from modelforge.report.html_page import page

    verdict = "PASSED" if report["passed"] else "FAILED"
    body = "".join(
        [
            page_header(report),
            kpi_cards(report),
            '<div class="grid2"><div>',
            summary_section(report),
            "</div><div>",
            gates_section(report),
            "</div></div>",
            cascade_section(report),
            machine_section(report.get("machine")),
            f"<footer>modelforge {escape(str(report.get('tool', {}).get('version', '')))} · self-contained page: "
            "no scripts, nothing loaded from the network</footer>",
        ]
    )
    return page(f"modelforge cascade: {verdict}", body)
