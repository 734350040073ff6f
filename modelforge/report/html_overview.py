"""The top of report.html: the header with the verdict, the KPI cards, the summary table and the gates."""

from __future__ import annotations

from html import escape
from typing import Any

from modelforge.report.format import (
    TASK_ROWS,
    accuracy_label,
    fmt_bytes,
    fmt_float,
    fmt_percent,
    fmt_pp_change,
    fmt_size_ratio,
    fmt_speedup,
    gate_rows,
    model_label,
    summary_rows,
    verdict_notes,
)
from modelforge.report.html_cells import data_value, fmt_ms, html_table, pill, td

# summary rows from format.summary_rows, with the raw values they show (for data-value attributes)
SUMMARY_ROW_KEYS = {
    "Top-1 accuracy": ("accuracy_baseline", "accuracy_result", "accuracy_drop_pp"),
    "Token accuracy": ("accuracy_baseline", "accuracy_result", "accuracy_drop_pp"),
    **{label: (key_a, key_b, None) for label, (key_a, key_b) in TASK_ROWS.items()},
    "Top-1 agreement": (None, "top1_agreement", None),
    "Output cosine": (None, "output_cosine", None),
    "Latency p50": ("latency_p50_ms_baseline", "latency_p50_ms_result", "speedup"),
    "Size": ("size_bytes_baseline", "size_bytes_result", "size_ratio"),
    # language models (format.language_model_rows)
    "Perplexity (held-out)": ("perplexity_baseline", "perplexity_result", "perplexity_ratio"),
    "Next-token KL (nats)": (None, "token_kl", None),
    "Top-1 token agreement": (None, "top1_agreement", None),
    "Prefill tokens/s": ("prefill_tokens_per_s_baseline", "prefill_tokens_per_s_result", None),
    "Decode tokens/s": ("decode_tokens_per_s_baseline", "decode_tokens_per_s_result", "speedup"),
}


def page_header(report: dict[str, Any]) -> str:
    models = report["models"]
    evaluation = report.get("evaluation") or {}
    samples = (evaluation.get("metrics") or {}).get("samples")
    verdict = "PASSED" if report["passed"] else "FAILED"
    tool = report.get("tool", {})
    return (
        "<header><div>"
        "<h1>modelforge report</h1>"
        f'<p class="sub">Baseline <code>{escape(str(models["baseline"]["path"]))}</code> '
        f"({escape(model_label(models['baseline']))}) vs result "
        f"<code>{escape(str(models['result']['path']))}</code></p>"
        f'<p class="sub">Evaluated on {samples if samples is not None else "?"} samples from '
        f"{escape(str(evaluation.get('data', '?')))} · {escape(tool.get('name', 'modelforge'))} "
        f"{escape(str(tool.get('version', '')))}</p>"
        f'</div><div class="badge {"pass" if report["passed"] else "fail"}" data-verdict="{verdict}">{verdict}</div>'
        "</header>"
    )


def kpi_cards(report: dict[str, Any]) -> str:
    s = report["summary"]
    cards = []
    if s.get("accuracy_result") is not None:
        drop = s.get("accuracy_drop_pp") or 0.0
        cls = "good" if drop <= 0 else ("bad" if drop > 0.5 else "")
        change = f"{fmt_pp_change(drop)} vs baseline"
        cards.append((accuracy_label(s), fmt_percent(s["accuracy_result"]), change, cls, "accuracy"))
    else:
        cards.append(("Top-1 agreement", fmt_percent(s.get("top1_agreement")), "no labels: vs baseline", "", "agree"))
    speedup = s.get("speedup")
    cards.append(
        (
            "Latency p50",
            fmt_ms(s.get("latency_p50_ms_result")),
            fmt_speedup(speedup),
            "" if speedup is None else ("good" if speedup >= 1 else "bad"),
            "latency",
        )
    )
    ratio = s.get("size_ratio")
    cards.append(
        (
            "Size",
            fmt_bytes(s.get("size_bytes_result")),
            fmt_size_ratio(ratio),
            "good" if ratio and ratio > 1 else "",
            "size",
        )
    )
    cards.append(("Output cosine", fmt_float(s.get("output_cosine"), 5), "mean over samples", "", "cosine"))
    html = "".join(
        f'<div class="kpi" data-kpi="{key}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="delta {cls}">{escape(delta)}</div></div>'
        for label, value, delta, cls, key in cards
    )
    return f'<div class="kpis">{html}</div>'


def summary_section(report: dict[str, Any]) -> str:
    summary = report["summary"]
    rows = []
    for metric, baseline, result, change in summary_rows(summary):
        keys = SUMMARY_ROW_KEYS.get(metric, (None, None, None))
        cells = [td(metric)]
        for text, key in zip((baseline, result, change), keys, strict=True):
            cells.append(td(text, key, summary.get(key)) if key else td(text))
        rows.append(cells)
    notes = "".join(f'<p class="note verdict-note">{escape(line)}</p>' for line in verdict_notes(report))
    return (
        '<section id="summary"><h2>Summary</h2>'
        + html_table(["Metric", "Baseline", "Result", "Change"], rows)
        + notes
        + ("</section>")
    )


def gates_section(report: dict[str, Any]) -> str:
    gates = report.get("gates") or []
    if not gates:
        return '<section id="gates"><h2>Gates</h2><p class="note">No gates configured: the run passes.</p></section>'
    rows = []
    for gate, (shown, threshold, value, _verdict) in zip(gates, gate_rows(gates), strict=True):
        name = gate["name"]
        rows.append(
            [
                td(shown),
                td(gate.get("metric", "")),
                td(threshold, f"gate.{name}.threshold", gate["threshold"]),
                td(value, f"gate.{name}.value", gate["value"]),
                f'<td data-gate="{escape(name)}" data-passed="{data_value(gate["passed"])}">'
                f"{pill(gate['passed'])}</td>",
            ]
        )
    return (
        '<section id="gates"><h2>Gates</h2>'
        + html_table(["Gate", "Metric", "Threshold", "Value", "Verdict"], rows)
        + ("</section>")
    )
