"""report.html: one self-contained page (inline CSS and SVG, no scripts, nothing fetched when viewed).

It shows the summary and gates, the latency distributions of both models, the batch sweep, accuracy vs size
vs speed, output-comparison metrics, session cold start and memory, per-stage details and the machine.
Everything is read from report.json, so `modelforge report OUTDIR --format html` re-renders it, and older
reports without the newer sections still render (those sections are left out).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from modelforge.report import charts
from modelforge.report.format import (
    fmt_bytes,
    fmt_float,
    fmt_percent,
    fmt_pp_change,
    fmt_size_ratio,
    fmt_speedup,
    fmt_value,
    gate_rows,
    model_label,
    summary_rows,
    verdict_notes,
)

CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --bg:#f8fafc; --card:#fff; --pass:#15803d;
  --pass-bg:#dcfce7; --fail:#b91c1c; --fail-bg:#fee2e2; --accent:#4f46e5; --base:#64748b; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 28px 48px; }
header { display:flex; justify-content:space-between; align-items:flex-start; gap:24px; margin-bottom:18px; }
h1 { font-size:24px; margin:0 0 4px; letter-spacing:-0.01em; }
h2 { font-size:17px; margin:0 0 12px; }
h3 { font-size:14px; margin:16px 0 8px; color:var(--muted); font-weight:600; }
.sub { color:var(--muted); margin:0; }
code { font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; background:#f1f5f9; padding:1px 5px;
  border-radius:4px; word-break:break-all; }
.badge { font-weight:700; letter-spacing:0.06em; padding:8px 16px; border-radius:999px; font-size:15px;
  white-space:nowrap; }
.badge.pass { color:var(--pass); background:var(--pass-bg); border:1px solid #86efac; }
.badge.fail { color:var(--fail); background:var(--fail-bg); border:1px solid #fca5a5; }
.kpis { display:grid; grid-template-columns:repeat(4,1fr); gap:14px; margin:0 0 18px; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:14px 16px; }
.kpi .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:0.05em; }
.kpi .value { font-size:24px; font-weight:650; margin-top:2px; font-variant-numeric:tabular-nums; }
.kpi .delta { font-size:12.5px; color:var(--muted); }
.good { color:var(--pass) !important; } .bad { color:var(--fail) !important; }
section { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:18px 20px;
  margin:0 0 16px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:18px; align-items:start; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th:first-child, td:first-child { text-align:left; }
th { font-size:12px; color:var(--muted); font-weight:600; text-transform:uppercase; letter-spacing:0.04em; }
tbody tr:hover { background:#f8fafc; }
td.left, th.left { text-align:left; }
.pill { display:inline-block; font-size:11.5px; font-weight:700; padding:2px 9px; border-radius:999px; }
.pill.pass { color:var(--pass); background:var(--pass-bg); }
.pill.fail { color:var(--fail); background:var(--fail-bg); }
.pill.info { color:#334155; background:#f1f5f9; font-weight:600; }
.pill.hot { color:#3730a3; background:#e0e7ff; }
.note { color:var(--muted); font-size:12.5px; margin:8px 0 0; }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:0; }
svg.chart { width:100%; height:auto; display:block; }
svg.chart text { font-family:inherit; fill:#475569; }
svg.chart .chart-title { font-size:13px; font-weight:650; fill:#0f172a; }
svg.chart .tick { font-size:10.5px; } svg.chart .axis-label { font-size:11px; fill:#64748b; }
svg.chart .legend { font-size:11px; } svg.chart .marker-label { font-size:10.5px; font-weight:600; }
svg.chart .point-label { font-size:12px; font-weight:650; fill:#0f172a; } svg.chart .point-sub { font-size:10.5px; }
svg.chart .bar-value { font-size:11px; } svg.chart .note-text { font-size:10.5px; font-style:italic; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:4px 18px; margin:0; }
dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; }
details summary { cursor:pointer; font-weight:600; }
td.details { max-width:760px; } .kv { display:inline-block; margin:0 14px 4px 0; white-space:nowrap; }
details.detail { display:inline-block; vertical-align:top; margin:0 14px 4px 0; }
details.detail summary { font-weight:400; } details.detail pre { max-height:320px; margin:6px 0; }
svg.chart .marker-label, svg.chart .point-label, svg.chart .point-sub, svg.chart .note-text {
  paint-order:stroke; stroke:#fff; stroke-width:3px; stroke-linejoin:round; }
pre { background:#0f172a; color:#e2e8f0; padding:14px; border-radius:8px; overflow:auto; font-size:12px; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:24px; }
@media (max-width: 900px) { .grid2 { grid-template-columns:1fr; } .kpis { grid-template-columns:1fr 1fr; } }
@media print { body { background:#fff; } section { break-inside:avoid; } }
"""


def _num(value: Any) -> str:
    """Raw value for data-value attributes ('' when missing)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:.10g}"
    return escape(str(value))


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """`rows` hold ready HTML for each cell."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _td(text: str, metric: str | None = None, value: Any = None, cls: str = "") -> str:
    attrs = f' data-metric="{escape(metric)}" data-value="{_num(value)}"' if metric else ""
    klass = f' class="{cls}"' if cls else ""
    return f"<td{attrs}{klass}>{escape(text)}</td>"


def _pill(passed: bool | None, yes: str = "PASSED", no: str = "FAILED") -> str:
    if passed is None:
        return '<span class="pill info">not measured</span>'
    return f'<span class="pill {"pass" if passed else "fail"}">{yes if passed else no}</span>'


def _ms(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.4f} ms" if value < 0.1 else f"{value:.3f} ms")


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} /s"


# summary rows from format.summary_rows, with the raw values they show (for data-value attributes)
SUMMARY_ROW_KEYS = {
    "Top-1 accuracy": ("accuracy_baseline", "accuracy_result", "accuracy_drop_pp"),
    "Top-1 agreement": (None, "top1_agreement", None),
    "Output cosine": (None, "output_cosine", None),
    "Latency p50": ("latency_p50_ms_baseline", "latency_p50_ms_result", "speedup"),
    "Size": ("size_bytes_baseline", "size_bytes_result", "size_ratio"),
}


def _header(report: dict[str, Any]) -> str:
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


def _kpis(report: dict[str, Any]) -> str:
    s = report["summary"]
    cards = []
    if s.get("accuracy_result") is not None:
        drop = s.get("accuracy_drop_pp") or 0.0
        cls = "good" if drop <= 0 else ("bad" if drop > 0.5 else "")
        cards.append(
            ("Top-1 accuracy", fmt_percent(s["accuracy_result"]), f"{fmt_pp_change(drop)} vs baseline", cls, "accuracy")
        )
    else:
        cards.append(("Top-1 agreement", fmt_percent(s.get("top1_agreement")), "no labels: vs baseline", "", "agree"))
    speedup = s.get("speedup")
    cards.append(
        (
            "Latency p50",
            _ms(s.get("latency_p50_ms_result")),
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


def _summary(report: dict[str, Any]) -> str:
    summary = report["summary"]
    rows = []
    for metric, baseline, result, change in summary_rows(summary):
        keys = SUMMARY_ROW_KEYS.get(metric, (None, None, None))
        cells = [_td(metric)]
        for text, key in zip((baseline, result, change), keys, strict=True):
            cells.append(_td(text, key, summary.get(key)) if key else _td(text))
        rows.append(cells)
    notes = "".join(f'<p class="note verdict-note">{escape(line)}</p>' for line in verdict_notes(report))
    return (
        '<section id="summary"><h2>Summary</h2>'
        + _table(["Metric", "Baseline", "Result", "Change"], rows)
        + notes
        + ("</section>")
    )


def _gates(report: dict[str, Any]) -> str:
    gates = report.get("gates") or []
    if not gates:
        return '<section id="gates"><h2>Gates</h2><p class="note">No gates configured: the run passes.</p></section>'
    rows = []
    for gate, (shown, threshold, value, _verdict) in zip(gates, gate_rows(gates), strict=True):
        name = gate["name"]
        rows.append(
            [
                _td(shown),
                _td(gate.get("metric", "")),
                _td(threshold, f"gate.{name}.threshold", gate["threshold"]),
                _td(value, f"gate.{name}.value", gate["value"]),
                f'<td data-gate="{escape(name)}" data-passed="{_num(gate["passed"])}">{_pill(gate["passed"])}</td>',
            ]
        )
    return (
        '<section id="gates"><h2>Gates</h2>'
        + _table(["Gate", "Metric", "Threshold", "Value", "Verdict"], rows)
        + ("</section>")
    )


def _stats_table(stats: dict[str, dict[str, Any]]) -> str:
    names = list(stats)
    colors = charts.series_colors(names)
    fields = [
        ("p50", "p50_ms", _ms),
        ("p90", "p90_ms", _ms),
        ("p99", "p99_ms", _ms),
        ("mean", "mean_ms", _ms),
        ("std", "std_ms", _ms),
        ("min", "min_ms", _ms),
        ("throughput", "throughput_per_s", _rate),
        ("runs", "runs", lambda v: "n/a" if v is None else str(v)),
    ]
    header = ["Statistic", *names]
    rows = []
    for label, key, fmt in fields:
        rows.append(
            [_td(label)] + [_td(fmt(stats[n].get(key)), f"latency.{n}.{key}", stats[n].get(key)) for n in names]
        )
    table = _table(header, rows)
    for name in names:  # colour key in the header, matching the charts
        table = table.replace(
            f"<th>{escape(name)}</th>",
            f'<th><span class="swatch" style="background:{colors[name]}"></span>{escape(name)}</th>',
            1,
        )
    return table


def _slo(latency: dict[str, Any]) -> str:
    slo = latency.get("slo")
    if not slo:
        return ""
    limits = ", ".join(f"{stat.removesuffix('_ms')} ≤ {limit:g} ms" for stat, limit in slo["limits_ms"].items())
    rows = []
    for name, verdict in slo["models"].items():
        values = verdict.get("values_ms") or {}
        shown = ", ".join(f"{stat.removesuffix('_ms')} {_ms(v)}" for stat, v in values.items()) or "not measured"
        largest = verdict.get("largest_batch_meeting")
        rows.append(
            [
                _td(name),
                _td(shown, f"slo.{name}.value", next(iter(values.values()), None)),
                f'<td data-slo="{escape(name)}" data-met="{_num(verdict.get("met"))}">'
                f"{_pill(verdict.get('met'), 'MEETS', 'MISSES')}</td>",
                _td("none" if largest is None else str(largest), f"slo.{name}.largest_batch", largest),
            ]
        )
    sizes = ", ".join(str(b) for b in slo.get("measured_batch_sizes", []))
    return (
        f'<h3 id="slo">Latency SLO: {escape(limits)} at batch {slo["batch_size"]}</h3>'
        + _table(["Model", f"At batch {slo['batch_size']}", "Verdict", "Largest batch meeting it"], rows)
        + f'<p class="note">The largest batch is among the measured batch sizes ({escape(sizes)}).</p>'
    )


def _latency(report: dict[str, Any]) -> str:
    latency = (report.get("evaluation") or {}).get("latency")
    if not latency:
        return (
            '<section id="latency"><h2>Latency</h2><p class="note">Latency was not measured '
            "(evaluate.skip_latency).</p></section>"
        )
    stats = {"baseline": latency["baseline"], "result": latency["result"]}
    samples = latency.get("samples_ms") or {}
    if samples:
        chart = charts.histogram(
            samples, title=f"Latency distribution, batch {latency['batch_size']} ({latency['threads']} threads)"
        )
    else:
        chart = '<p class="note">This report holds no per-run samples (written by an older modelforge).</p>'
    method = escape(latency.get("method", ""))
    rule = latency.get("stop_rule")
    stopped = latency.get("stopped")
    note = (
        f"Batch {latency['batch_size']}, {latency['threads']} intra-op threads"
        + (f", {latency['inter_op_threads']} inter-op" if "inter_op_threads" in latency else "")
        + (f", {latency['warmup']} warm-up runs" if "warmup" in latency else "")
        + f"; {method}."
        + (f" Stop rule: {escape(rule)}; stopped: {escape(stopped)}." if rule else "")
    )
    return (
        '<section id="latency"><h2>Latency</h2><div class="grid2">'
        f"<div>{chart}</div><div>{_stats_table(stats)}</div></div>"
        f'<p class="note">{note}</p>{_slo(latency)}</section>'
    )


def _sweep(report: dict[str, Any]) -> str:
    latency = (report.get("evaluation") or {}).get("latency") or {}
    sweep = latency.get("sweep") or []
    return sweep_section(sweep, latency.get("slo"))


def sweep_section(sweep: list[dict[str, Any]], slo: dict[str, Any] | None) -> str:
    """Batch-size sweep: latency and throughput charts (two or more batch sizes) and a table."""
    if not sweep:
        return ""
    names = list(dict.fromkeys(n for e in sweep for n in e["stats"]))
    xs = [e["batch_size"] for e in sweep]

    def column(stat: str) -> dict[str, list[float | None]]:
        return {n: [(e["stats"].get(n) or {}).get(stat) for e in sweep] for n in names}

    threshold = None
    if slo:
        stat, limit = next(iter(slo["limits_ms"].items()))
        threshold = (limit, f"SLO {stat.removesuffix('_ms')} ≤ {limit:g} ms")
    if len(xs) > 1:
        latency_chart = charts.line_chart(
            "batch-sweep-latency",
            xs,
            column("p50_ms"),
            dashed=column("p99_ms"),
            dashed_label="p99",
            threshold=threshold,
            title="Latency per batch (p50 solid, p99 dashed)",
            x_label="batch size",
            y_label="ms per batch",
        )
        throughput_chart = charts.line_chart(
            "batch-sweep-throughput",
            xs,
            column("throughput_per_s"),
            title="Throughput per batch size",
            x_label="batch size",
            y_label="samples per second (at p50)",
        )
        charts_html = f'<div class="grid2"><div>{latency_chart}</div><div>{throughput_chart}</div></div>'
    else:
        charts_html = (
            '<p class="note">One batch size measured: list more in evaluate.latency.batch_sizes '
            "(e.g. [1, 8, 32, 64]) to sweep.</p>"
        )
    header = ["Batch", *(f"{n} {s}" for n in names for s in ("p50", "p99", "throughput"))]
    if "speedup" in sweep[0]:
        header.append("Speed-up")
    header.append("Stopped")
    rows = []
    for e in sweep:
        b = e["batch_size"]
        cells = [_td(str(b))]
        for n in names:
            st = e["stats"].get(n) or {}
            cells += [
                _td(_ms(st.get("p50_ms")), f"sweep.{b}.{n}.p50_ms", st.get("p50_ms")),
                _td(_ms(st.get("p99_ms")), f"sweep.{b}.{n}.p99_ms", st.get("p99_ms")),
                _td(_rate(st.get("throughput_per_s")), f"sweep.{b}.{n}.throughput_per_s", st.get("throughput_per_s")),
            ]
        if "speedup" in e:
            cells.append(_td(fmt_speedup(e["speedup"]), f"sweep.{b}.speedup", e["speedup"]))
        cells.append(_td(e.get("stopped", "")))
        rows.append(cells)
    return f'<section id="sweep"><h2>Batch sweep</h2>{charts_html}{_table(header, rows)}</section>'


def _tradeoff(report: dict[str, Any]) -> str:
    s = report["summary"]
    if s.get("latency_p50_ms_baseline") is None:
        return ""
    with_labels = s.get("accuracy_result") is not None
    if with_labels:
        y_a, y_b, y_label = s["accuracy_baseline"] * 100, s["accuracy_result"] * 100, "top-1 accuracy (%)"
    else:
        agreement = s.get("top1_agreement")
        if agreement is None:
            return ""
        y_a, y_b, y_label = 100.0, agreement * 100, "top-1 agreement with the baseline (%)"
    points = [
        charts.Point(
            "baseline", s["latency_p50_ms_baseline"], y_a, s["size_bytes_baseline"], fmt_bytes(s["size_bytes_baseline"])
        ),
        charts.Point(
            "result", s["latency_p50_ms_result"], y_b, s["size_bytes_result"], fmt_bytes(s["size_bytes_result"])
        ),
    ]
    batch = ((report.get("evaluation") or {}).get("latency") or {}).get("batch_size", "?")
    chart = charts.tradeoff_scatter(
        points, title="Accuracy vs size vs speed", x_label=f"p50 latency at batch {batch} (ms)", y_label=y_label
    )
    table = _table(
        ["Model", "p50 latency", "Size", y_label.split(" (")[0].capitalize()],
        [[_td(p.name), _td(_ms(p.x)), _td(p.label), _td(f"{p.y:.2f}%")] for p in points],
    )
    text = (
        f"<p>Up and to the left is better; a smaller bubble is a smaller file. The result is "
        f"<b>{escape(fmt_speedup(s.get('speedup')))}</b> and "
        f"<b>{escape(fmt_size_ratio(s.get('size_ratio')))}</b>"
        + (
            f", with top-1 accuracy {escape(fmt_percent(s['accuracy_result']))} "
            f"({fmt_pp_change(s.get('accuracy_drop_pp') or 0.0)}).</p>"
            if with_labels
            else f", agreeing with the baseline on {escape(fmt_percent(s.get('top1_agreement')))} of samples.</p>"
        )
    )
    return (
        '<section id="tradeoff"><h2>Accuracy vs size vs speed</h2>'
        f'<div class="grid2"><div>{chart}</div><div>{text}{table}</div></div></section>'
    )


def _outputs(report: dict[str, Any]) -> str:
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
        base = _td(fmt(a), f"metrics.{key}_baseline", a) if a is not None else _td("")
        html_rows.append([_td(label), base, _td(fmt(b), f"metrics.{key}", b)])
    for spec, value in (m.get("custom") or {}).items():
        if isinstance(value, dict):
            for key, v in value.items():
                html_rows.append([_td(f"{spec} · {key}"), _td(""), _td(fmt_float(v, 6), f"custom.{spec}.{key}", v)])
        else:
            html_rows.append([_td(spec), _td(""), _td(fmt_float(value, 6), f"custom.{spec}", value)])
    left = _table(["Metric", "Baseline", "Result"], html_rows)

    conf_a, conf_b = m.get("confidence_baseline"), m.get("confidence_result")
    right = '<p class="note">No top-1 confidence: the first output is not a [N, classes] score.</p>'
    if conf_a and conf_b and conf_a.get("mean") is not None and conf_b.get("mean") is not None:
        stats = [k for k in ("mean", "p5", "p25", "p50", "p75", "p95") if k in conf_a]
        conf_rows = [
            [_td(name)] + [_td(fmt_percent(conf[k]), f"metrics.confidence_{name}.{k}", conf[k]) for k in stats]
            for name, conf in (("baseline", conf_a), ("result", conf_b))
        ]
        drop = (conf_a["mean"] - conf_b["mean"]) * 100
        right = (
            "<h3>Top-1 confidence</h3>"
            + _table(["Model", *stats], conf_rows)
            + f'<p class="note">Mean top-1 confidence {"fell" if drop > 0 else "rose"} by {abs(drop):.3f} pp '
            f"({escape(m.get('confidence_source', ''))}). A falling confidence, in the low percentiles "
            "especially, warns before accuracy drops.</p>"
        )
    return (
        '<section id="outputs"><h2>Output comparison</h2>'
        f'<div class="grid2"><div>{left}</div><div>{right}</div></div></section>'
    )


def sessions_section(sessions: dict[str, Any] | None) -> str:
    if not sessions:
        return ""
    names = [n for n, v in sessions.items() if isinstance(v, dict)]
    rows = []
    for name in names:
        s = sessions[name]
        rows.append(
            [
                _td(name),
                _td(_ms(s.get("create_ms")), f"sessions.{name}.create_ms", s.get("create_ms")),
                _td(_ms(s.get("first_run_ms")), f"sessions.{name}.first_run_ms", s.get("first_run_ms")),
                _td(
                    fmt_bytes(s.get("peak_rss_growth_bytes")),
                    f"sessions.{name}.peak_rss_growth_bytes",
                    s.get("peak_rss_growth_bytes"),
                ),
                _td(
                    fmt_bytes(s.get("process_peak_rss_bytes")),
                    f"sessions.{name}.process_peak_rss_bytes",
                    s.get("process_peak_rss_bytes"),
                ),
            ]
        )
    return (
        '<section id="sessions"><h2>Sessions: cold start and memory</h2>'
        + _table(["Model", "Session creation", "First run", "Peak memory of the session", "Serving process peak"], rows)
        + f'<p class="note">Memory: {escape(sessions.get("memory_method", ""))}.'
        + (
            " Some models could not be opened in a fresh process: their figure was measured in this one, "
            "where reused memory makes it a lower bound."
            if any(sessions[n].get("memory_measured_in") == "this process" for n in names)
            else ""
        )
        + "</p></section>"
    )


def _stage_detail(key: str, value: Any) -> str:
    """Scalars inline (floats rounded: report.json keeps them whole); nested values folded, with lists of records
    (the `target: auto` candidates, per-layer rows) as tables rather than JSON."""
    if isinstance(value, dict | list):
        return (
            f'<details class="detail"><summary><code>{escape(str(key))}</code></summary>{_nested_html(value)}</details>'
        )
    return f'<span class="kv"><code>{escape(str(key))}</code> {escape(fmt_value(value))}</span>'


def _records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, dict) for row in value)


def _plain(value: Any) -> str:
    """A cell: rounded scalars; anything nested deeper stays JSON (rare, and still readable)."""
    return fmt_value(value) if not isinstance(value, dict | list) else json.dumps(value)


def _nested_html(value: Any) -> str:
    if _records(value):
        columns = list(dict.fromkeys(k for row in value for k in row))
        rows = [[_td(_plain(row.get(c, ""))) for c in columns] for row in value]
        return _table(columns, rows, "records")
    if isinstance(value, dict):
        scalars = [(k, v) for k, v in value.items() if not isinstance(v, dict | list)]
        parts = [
            '<dl class="kv">'
            + "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(_plain(v))}</dd>" for k, v in scalars)
            + "</dl>"
            if scalars
            else ""
        ]
        for k, v in value.items():
            if isinstance(v, dict | list):
                parts.append(f"<h4>{escape(str(k))}</h4>{_nested_html(v) if v else '<p>none</p>'}")
        return "".join(parts)
    return f"<p>{escape(', '.join(map(_plain, value)) or 'none')}</p>"


def _stages(report: dict[str, Any]) -> str:
    stages = report.get("stages") or []
    if not stages:
        return ""
    chart = charts.hbars(
        "stages", [(s["name"], float(s["seconds"])) for s in stages], title="Time per stage", unit="s", width=1080
    )
    rows = []
    for s in stages:
        details = " ".join(_stage_detail(k, v) for k, v in (s.get("metrics") or {}).items())
        rows.append(
            [
                _td(s["name"]),
                _td(f"{s.get('input_format', '')} → {s.get('output_format', '')}"),
                _td(f"{s['seconds']:.2f} s", f"stage.{s['name']}.seconds", s["seconds"]),
                f'<td class="left details">{details}</td>',
            ]
        )
    table = _table(["Stage", "Formats", "Time", "Details"], rows).replace(
        "<th>Details</th>", '<th class="left">Details</th>'
    )
    return f'<section id="stages"><h2>Stages</h2>{chart}{table}</section>'


def machine_section(machine: dict[str, Any] | None) -> str:
    if not machine:
        return ""
    cpu = machine.get("cpu", {})
    int8 = set(cpu.get("int8_instruction_sets") or [])
    isa = cpu.get("instruction_sets") or sorted(int8)
    pills = " ".join(f'<span class="pill {"hot" if f in int8 else "info"}">{escape(f)}</span>' for f in isa) or "none"
    versions = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in (machine.get("versions") or {}).items())
    return (
        '<section id="machine"><h2>Machine</h2><dl class="kv">'
        f"<dt>CPU</dt><dd>{escape(str(cpu.get('model', '?')))} ({escape(str(cpu.get('arch', '?')))}), "
        f"{escape(str(cpu.get('cores', '?')))} cores available</dd>"
        f"<dt>Instruction sets</dt><dd>{pills}"
        + ('<br><span class="note">highlighted: the ones that speed up INT8</span>' if int8 else "")
        + "</dd>"
        f"<dt>OS</dt><dd>{escape(str(machine.get('os', '?')))}</dd>"
        f"<dt>Versions</dt><dd>{versions}</dd></dl></section>"
    )


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def render_html(report: dict[str, Any]) -> str:
    from modelforge.report.distillation import distillation_section
    from modelforge.report.export import export_section
    from modelforge.report.pruning import pruning_section

    verdict = "PASSED" if report["passed"] else "FAILED"
    evaluation = report.get("evaluation") or {}
    recipe = json.dumps(report.get("recipe", {}), indent=2)
    body = "".join(
        [
            _header(report),
            _kpis(report),
            '<div class="grid2"><div>',
            _summary(report),
            "</div><div>",
            _gates(report),
            "</div></div>",
            _latency(report),
            _sweep(report),
            _tradeoff(report),
            _outputs(report),
            sessions_section(evaluation.get("sessions")),
            pruning_section(report),
            export_section(report),
            distillation_section(report),
            _stages(report),
            machine_section(report.get("machine")),
            f'<section id="recipe"><details><summary>Recipe as resolved</summary><pre>{escape(recipe)}</pre>'
            "</details></section>",
            f"<footer>modelforge {escape(str(report.get('tool', {}).get('version', '')))} · report schema "
            f"{escape(str(report.get('schema_version', '?')))} · self-contained page: no scripts, nothing loaded "
            "from the network</footer>",
        ]
    )
    return page(f"modelforge report: {verdict}", body)


def render_bench_html(record: dict[str, Any]) -> str:
    """`modelforge bench --html`: distributions at each batch size, the sweep, sessions, SLO and machine."""
    latency = record["latency"]
    sweep = latency["sweep"]
    names = [m["name"] for m in record["models"]]
    verdict = "PASSED" if record["passed"] else "FAILED"
    badge = (
        f'<div class="badge {"pass" if record["passed"] else "fail"}" data-verdict="{verdict}">{verdict}</div>'
        if latency.get("slo")
        else ""
    )
    models = "".join(f"<li><code>{escape(n)}</code></li>" for n in names)
    distributions = "".join(
        "<div>" + charts.histogram(e["samples_ms"], title=f"Latency distribution, batch {e['batch_size']}") + "</div>"
        for e in sweep
    )
    body = "".join(
        [
            f'<header><div><h1>modelforge bench</h1><p class="sub">{len(names)} model(s), '
            f"{latency['threads']} intra-op threads, {escape(record['inputs'])}</p><ul>{models}</ul></div>{badge}"
            "</header>",
            sweep_section(sweep, latency.get("slo")),
            f'<section id="latency"><h2>Latency distributions</h2><div class="grid2">{distributions}</div>'
            f'<p class="note">{escape(latency["method"])}. Stop rule: {escape(latency["stop_rule"])}.</p>'
            + _slo(latency)
            + "</section>",
            sessions_section(record.get("sessions")),
            machine_section(record.get("machine")),
            f"<footer>modelforge {escape(str(record.get('tool', {}).get('version', '')))} bench · self-contained "
            "page: no scripts, nothing loaded from the network</footer>",
        ]
    )
    return page(f"modelforge bench: {', '.join(names)}", body)
