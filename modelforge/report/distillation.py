"""The distillation section of report.html: teacher, distilled student and label-only baseline side by side
(accuracy, agreement with the teacher, params, MACs, sizes, measured latency), the teacher-cache saving, and the
training curves of the student and the baseline as inline SVG charts.

html.py only calls `distillation_section(report)`.
"""

from __future__ import annotations

from html import escape
from typing import Any

from modelforge.report.format import fmt_value
from modelforge.report.pruning import curve_chart


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _int(value: Any) -> str:
    return "n/a" if value is None else f"{value:,}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f} ms"


def comparison_rows(report: dict[str, Any], metrics: dict[str, Any]) -> tuple[list[str], list[tuple[str, ...]]]:
    """(column names, rows) of the teacher / student / baseline table; also used by tests and benchmarks."""
    models = metrics.get("models") or {}
    names = [n for n in ("teacher", "student", "baseline") if n in models]
    headers = {"teacher": "Teacher", "student": "Distilled student", "baseline": "Label-only baseline"}
    summary = report.get("summary") or {}
    final = report.get("stages", [])[-1].get("pass") if report.get("stages") else None
    # The summary measures the teacher's ONNX form against the run's result: the student, unless a later pass
    # (quantize) changed it, in which case the result column is that model.
    latency = {"teacher": _ms(summary.get("latency_p50_ms_baseline"))}
    onnx = {"teacher": _int(summary.get("size_bytes_baseline"))}
    student_is_result = final in ("distill", "convert")
    suffix = "" if student_is_result else " (final model)"
    latency["student"] = _ms(summary.get("latency_p50_ms_result")) + suffix
    onnx["student"] = _int(summary.get("size_bytes_result")) + suffix
    latency["baseline"] = "as the student (same architecture)"
    onnx["baseline"] = "as the student"

    def row(label: str, cell) -> tuple[str, ...]:
        return (label, *(cell(n) for n in names))

    rows = [
        row("Top-1 accuracy (eval data)", lambda n: _pct(models[n].get("accuracy"))),
        row("Agreement with the teacher", lambda n: _pct(models[n].get("agreement_with_teacher"))),
        row("Parameters", lambda n: _int(models[n].get("params"))),
        row("MACs", lambda n: _int(models[n].get("macs"))),
        row("Weights (bytes, float32)", lambda n: _int(models[n].get("weights_bytes"))),
        row("ONNX size (bytes)", lambda n: onnx.get(n, "n/a")),
        row("Latency p50 (ONNX Runtime, interleaved)", lambda n: latency.get(n, "n/a")),
    ]
    return ["", *(headers[n] for n in names)], rows


def distillation_section(report: dict[str, Any]) -> str:
    stages = [s for s in report.get("stages") or [] if s.get("pass") == "distill"]
    if not stages:
        return ""
    html = ['<section id="distillation"><h2>Distillation</h2>']
    for stage in stages:
        m = stage.get("metrics") or {}
        facts = [
            ("Student", m.get("student_source")),
            ("Loss", f"{m.get('loss')} (T={m.get('temperature')}, alpha={m.get('alpha')})"),
            ("Parameters / MACs of the teacher's", f"{_pct(m.get('params_ratio'))} / {_pct(m.get('macs_ratio'))}"),
            ("Student accuracy as a share of the teacher's", _pct(m.get("accuracy_share_of_teacher"))),
            ("Gain over the label-only baseline", f"{m['gain_over_baseline_pp']:+.2f} pp")
            if m.get("gain_over_baseline_pp") is not None
            else ("Label-only baseline", m.get("baseline")),
            (
                "Hint layer pairs",
                ", ".join(f"{h['teacher']} -> {h['student']}" for h in m.get("hints") or []) or "none",
            ),
            ("Processes (torchrun world size)", (m.get("distributed") or {}).get("world_size", 1)),
        ]
        cache = m.get("teacher_cache") or {}
        facts.append(("Teacher-output cache", cache.get("note") or f"off: {cache.get('reason')}"))
        table = "".join(f"<tr><td>{escape(k)}</td><td>{escape(fmt_value(v))}</td></tr>" for k, v in facts)
        html.append(f"<table><tbody>{table}</tbody></table>")
        columns, rows = comparison_rows(report, m)
        if len(columns) > 1:
            head = "".join(f"<th>{escape(c)}</th>" for c in columns)
            body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
            html.append(f'<table data-table="distillation"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
        html.append(curve_chart(m.get("training_curve") or [], title="Distilled student: training curve"))
        if m.get("baseline_training_curve"):
            html.append(curve_chart(m["baseline_training_curve"], title="Label-only baseline: training curve"))
    html.append("</section>")
    return "".join(html)
