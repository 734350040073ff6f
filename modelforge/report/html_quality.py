"""What the result is worth in report.html: accuracy vs size vs speed, and how its outputs compare with the
baseline's (accuracy, agreement, cosine, SQNR, custom metrics, top-1 confidence)."""

from __future__ import annotations

from html import escape
from typing import Any

from modelforge.report.charts.scatter import Point, tradeoff_scatter
from modelforge.report.format import (
    accuracy_label,
    fmt_bytes,
    fmt_float,
    fmt_percent,
    fmt_pp_change,
    fmt_size_ratio,
    fmt_speedup,
)
from modelforge.report.html_cells import fmt_ms, html_table, td


def tradeoff_section(report: dict[str, Any]) -> str:
    s = report["summary"]
    if s.get("latency_p50_ms_baseline") is None:
        return ""
    with_labels = s.get("accuracy_result") is not None
    if with_labels:
        y_a, y_b, y_label = s["accuracy_baseline"] * 100, s["accuracy_result"] * 100, f"{accuracy_label(s).lower()} (%)"
    else:
        agreement = s.get("top1_agreement")
        if agreement is None:
            return ""
        y_a, y_b, y_label = 100.0, agreement * 100, "top-1 agreement with the baseline (%)"
    points = [
        Point(
            "baseline", s["latency_p50_ms_baseline"], y_a, s["size_bytes_baseline"], fmt_bytes(s["size_bytes_baseline"])
        ),
        Point("result", s["latency_p50_ms_result"], y_b, s["size_bytes_result"], fmt_bytes(s["size_bytes_result"])),
    ]
    batch = ((report.get("evaluation") or {}).get("latency") or {}).get("batch_size", "?")
    chart = tradeoff_scatter(
        points, title="Accuracy vs size vs speed", x_label=f"p50 latency at batch {batch} (ms)", y_label=y_label
    )
    table = html_table(
        ["Model", "p50 latency", "Size", y_label.split(" (")[0].capitalize()],
        [[td(p.name), td(fmt_ms(p.x)), td(p.label), td(f"{p.y:.2f}%")] for p in points],
    )
    text = (
        f"<p>Up and to the left is better; a smaller bubble is a smaller file. The result is "
        f"<b>{escape(fmt_speedup(s.get('speedup')))}</b> and "
        f"<b>{escape(fmt_size_ratio(s.get('size_ratio')))}</b>"
        + (
            f", with {accuracy_label(s).lower()} {escape(fmt_percent(s['accuracy_result']))} "
            f"({fmt_pp_change(s.get('accuracy_drop_pp') or 0.0)}).</p>"
            if with_labels
            else f", agreeing with the baseline on {escape(fmt_percent(s.get('top1_agreement')))} of samples.</p>"
        )
    )
    return (
        '<section id="tradeoff"><h2>Accuracy vs size vs speed</h2>'
        f'<div class="grid2"><div>{chart}</div><div>{text}{table}</div></div></section>'
    )


def outputs_section(report: dict[str, Any]) -> str:
    m = (report.get("evaluation") or {}).get("metrics") or {}
    sqnr = m.get("sqnr_db")
    rows = [
        ("Top-1 accuracy", "accuracy", m.get("accuracy_baseline"), m.get("accuracy_result"), fmt_percent),
        (
            "Top-5 accuracy",
            "top5_accuracy",
            m.get("top5_accuracy_baseline"),
            m.get("top5_accuracy_result"),
            fmt_percent,
        ),
        ("Top-1 agreement", "top1_agreement", None, m.get("top1_agreement"), fmt_percent),
        ("Output cosine, mean", "output_cosine", None, m.get("output_cosine"), lambda v: fmt_float(v, 5)),
        (
            "Output cosine, worst sample",
            "output_cosine_min",
            None,
            m.get("output_cosine_min"),
            lambda v: fmt_float(v, 5),
        ),
        (
            "SQNR",
            "sqnr_db",
            None,
            sqnr,
            # null: identical outputs (no error at all), or NaN in them
            lambda v: f"{v:.1f} dB" if v is not None else "∞ (identical)" if m.get("max_abs_error", 0) == 0 else "n/a",
        ),
        ("Max abs error", "max_abs_error", None, m.get("max_abs_error"), lambda v: fmt_float(v, 4)),
    ]
    html_rows = []
    for label, key, a, b, fmt in rows:
        base = td(fmt(a), f"metrics.{key}_baseline", a) if a is not None else td("")
        html_rows.append([td(label), base, td(fmt(b), f"metrics.{key}", b)])
    for spec, value in (m.get("custom") or {}).items():
        if isinstance(value, dict):
            for key, v in value.items():
                html_rows.append([td(f"{spec} · {key}"), td(""), td(fmt_float(v, 6), f"custom.{spec}.{key}", v)])
        else:
            html_rows.append([td(spec), td(""), td(fmt_float(value, 6), f"custom.{spec}", value)])
    left = html_table(["Metric", "Baseline", "Result"], html_rows)

    conf_a, conf_b = m.get("confidence_baseline"), m.get("confidence_result")
    right = '<p class="note">No top-1 confidence: the first output is not a [N, classes] score.</p>'
    if conf_a and conf_b and conf_a.get("mean") is not None and conf_b.get("mean") is not None:
        stats = [k for k in ("mean", "p5", "p25", "p50", "p75", "p95") if k in conf_a]
        conf_rows = [
            [td(name)] + [td(fmt_percent(conf[k]), f"metrics.confidence_{name}.{k}", conf[k]) for k in stats]
            for name, conf in (("baseline", conf_a), ("result", conf_b))
        ]
        drop = (conf_a["mean"] - conf_b["mean"]) * 100
        right = (
            "<h3>Top-1 confidence</h3>"
            + html_table(["Model", *stats], conf_rows)
            + f'<p class="note">Mean top-1 confidence {"fell" if drop > 0 else "rose"} by {abs(drop):.3f} pp '
            f"({escape(m.get('confidence_source', ''))}). A falling confidence, in the low percentiles "
            "especially, warns before accuracy drops.</p>"
        )
    return (
        '<section id="outputs"><h2>Output comparison</h2>'
        f'<div class="grid2"><div>{left}</div><div>{right}</div></div></section>'
    )
