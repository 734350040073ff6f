"""The pruning section of report.html: accuracy before / after pruning / after fine-tuning, model size and MACs,
the training curve (loss and eval accuracy per epoch, as an inline SVG chart) and the per-layer table.

Kept apart from html.py (already the largest module): html.py only calls `pruning_section(report)`.
"""

from __future__ import annotations

from html import escape
from typing import Any

from modelforge.report.format import fmt_value


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def curve_chart(
    history: list[dict[str, Any]], width: int = 560, height: int = 240, title: str = "Training curve"
) -> str:
    """Loss (left axis) and eval accuracy (right axis, 0..1) per epoch, as polylines with data-* marks."""
    if not history:
        return ""
    pad_l, pad_r, pad_t, pad_b = 48, 48, 28, 32
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    n = len(history)
    losses = [r.get("loss") for r in history]
    top = max((v for v in losses if v is not None), default=1.0) or 1.0

    def x(i: int) -> float:
        return pad_l + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v: float, hi: float) -> float:
        return pad_t + h * (1 - v / hi)

    parts = [
        f'<svg data-chart="training-curve" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{pad_l}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
        f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#94a3b8"/>',
        f'<text x="4" y="{pad_t + 10}" font-size="11" fill="#4f46e5">loss</text>',
        f'<text x="{pad_l + w + 4}" y="{pad_t + 10}" font-size="11" fill="#16a34a">eval acc</text>',
        f'<text x="{pad_l + w / 2}" y="{height - 6}" font-size="11" text-anchor="middle">epoch</text>',
    ]
    for series, color, hi in (("loss", "#4f46e5", top), ("eval_accuracy", "#16a34a", 1.0)):
        points = [(x(i), y(r[series], hi), r[series]) for i, r in enumerate(history) if r.get(series) is not None]
        if not points:
            continue
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        parts.append(
            f'<polyline data-series="{series}" points="{line}" fill="none" stroke="{color}" stroke-width="2"/>'
        )
        parts += [
            f'<circle data-series="{series}" data-value="{v:.6g}" cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>'
            for px, py, v in points
        ]
    parts.append("</svg>")
    return "".join(parts)


def pruning_section(report: dict[str, Any]) -> str:
    stages = [s for s in report.get("stages") or [] if s.get("pass") == "prune"]
    if not stages:
        return ""
    html = ['<section id="pruning"><h2>Pruning</h2>']
    for stage in stages:
        m = stage.get("metrics") or {}
        rows = [
            ("Method", f"{m.get('method')} ({m.get('importance')}, {m.get('schedule')})"),
            ("Accuracy before pruning", _pct(m.get("accuracy_before_prune"))),
            ("Accuracy right after pruning", _pct(m.get("accuracy_after_prune"))),
            ("Accuracy after fine-tuning", _pct(m.get("accuracy_after_finetune"))),
            ("Parameters", f"{m.get('params_before')} → {m.get('params_after')}"),
            ("MACs", f"{m.get('macs_before')} → {m.get('macs_after')}"),
            ("Program size (bytes)", f"{m.get('program_bytes_before')} → {m.get('program_bytes_after')}"),
            ("Weights (bytes)", f"{m.get('weights_bytes_before')} → {m.get('weights_bytes_after')}"),
            ("Weights gzipped (bytes)", f"{m.get('gzip_bytes_before')} → {m.get('gzip_bytes_after')}"),
        ]
        if m.get("sparsity_measured") is not None:
            rows.append(("Sparsity of the pruned layers", _pct(m["sparsity_measured"])))
        if m.get("channel_fraction_removed") is not None:
            rows.append(("Channels removed (pruned layers)", _pct(m["channel_fraction_removed"])))
        table = "".join(f"<tr><td>{escape(k)}</td><td>{escape(fmt_value(v))}</td></tr>" for k, v in rows)
        html.append(f"<table><tbody>{table}</tbody></table>")
        note = m.get("note") or (m.get("semi_structured") or {}).get("note")
        if note:
            html.append(f'<p class="note">{escape(note)}</p>')
        html.append(curve_chart(m.get("training_curve") or []))
        layer_rows = m.get("channels") or m.get("layers") or []
        if layer_rows:
            columns = list(layer_rows[0])
            head = "".join(f"<th>{escape(c)}</th>" for c in columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{escape(fmt_value(r.get(c)))}</td>" for c in columns) + "</tr>"
                for r in layer_rows
            )
            html.append(
                f"<details><summary>Per layer ({len(layer_rows)})</summary><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table></details>"
            )
    html.append("</section>")
    return "".join(html)
