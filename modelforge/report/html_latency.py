"""Latency in report.html and the bench page: distributions and statistics of each model, the SLO verdicts, and
the batch-size sweep (charts and table)."""

from __future__ import annotations

from html import escape
from typing import Any

from modelforge.report.charts.axes import series_colors
from modelforge.report.charts.histogram import histogram
from modelforge.report.charts.line import line_chart
from modelforge.report.format import fmt_speedup
from modelforge.report.html_cells import data_value, fmt_ms, fmt_rate, html_table, pill, td


def stats_table(stats: dict[str, dict[str, Any]]) -> str:
    names = list(stats)
    colors = series_colors(names)
    fields = [
        ("p50", "p50_ms", fmt_ms),
        ("p90", "p90_ms", fmt_ms),
        ("p99", "p99_ms", fmt_ms),
        ("mean", "mean_ms", fmt_ms),
        ("std", "std_ms", fmt_ms),
        ("min", "min_ms", fmt_ms),
        ("throughput", "throughput_per_s", fmt_rate),
        ("runs", "runs", lambda v: "n/a" if v is None else str(v)),
    ]
    header = ["Statistic", *names]
    rows = []
    for label, key, fmt in fields:
        rows.append([td(label)] + [td(fmt(stats[n].get(key)), f"latency.{n}.{key}", stats[n].get(key)) for n in names])
    table = html_table(header, rows)
    for name in names:  # colour key in the header, matching the charts
        table = table.replace(
            f"<th>{escape(name)}</th>",
            f'<th><span class="swatch" style="background:{colors[name]}"></span>{escape(name)}</th>',
            1,
        )
    return table


def slo_section(latency: dict[str, Any]) -> str:
    from modelforge.measure.profile import slo_values_text

    slo = latency.get("slo")
    if not slo:
        return ""
    limits = ", ".join(f"{stat.removesuffix('_ms')} ≤ {limit:g} ms" for stat, limit in slo["limits_ms"].items())
    rows = []
    for name, verdict in slo["models"].items():
        values = verdict.get("values_ms") or {}
        shown = slo_values_text(verdict, fmt_ms) or "not measured"
        largest = verdict.get("largest_batch_meeting")
        rows.append(
            [
                td(name),
                td(shown, f"slo.{name}.value", next(iter(values.values()), None)),
                f'<td data-slo="{escape(name)}" data-met="{data_value(verdict.get("met"))}">'
                f"{pill(verdict.get('met'), 'MEETS', 'MISSES')}</td>",
                td("none" if largest is None else str(largest), f"slo.{name}.largest_batch", largest),
            ]
        )
    sizes = ", ".join(str(b) for b in slo.get("measured_batch_sizes", []))
    return (
        f'<h3 id="slo">Latency SLO: {escape(limits)} at batch {slo["batch_size"]}</h3>'
        + html_table(["Model", f"At batch {slo['batch_size']}", "Verdict", "Largest batch meeting it"], rows)
        + f'<p class="note">The largest batch is among the measured batch sizes ({escape(sizes)}).'
        + (f" Verdicts are judged on the {escape(slo['judged_on'])} (bound).</p>" if slo.get("judged_on") else "</p>")
    )


def latency_section(report: dict[str, Any]) -> str:
    latency = (report.get("evaluation") or {}).get("latency")
    if not latency:
        return (
            '<section id="latency"><h2>Latency</h2><p class="note">Latency was not measured '
            "(evaluate.skip_latency).</p></section>"
        )
    stats = {"baseline": latency["baseline"], "result": latency["result"]}
    samples = latency.get("samples_ms") or {}
    if samples:
        chart = histogram(
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
        f"<div>{chart}</div><div>{stats_table(stats)}</div></div>"
        f'<p class="note">{note}</p>{slo_section(latency)}</section>'
    )


def report_sweep_section(report: dict[str, Any]) -> str:
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
        latency_chart = line_chart(
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
        throughput_chart = line_chart(
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
        cells = [td(str(b))]
        for n in names:
            st = e["stats"].get(n) or {}
            cells += [
                td(fmt_ms(st.get("p50_ms")), f"sweep.{b}.{n}.p50_ms", st.get("p50_ms")),
                td(fmt_ms(st.get("p99_ms")), f"sweep.{b}.{n}.p99_ms", st.get("p99_ms")),
                td(fmt_rate(st.get("throughput_per_s")), f"sweep.{b}.{n}.throughput_per_s", st.get("throughput_per_s")),
            ]
        if "speedup" in e:
            cells.append(td(fmt_speedup(e["speedup"]), f"sweep.{b}.speedup", e["speedup"]))
        cells.append(td(e.get("stopped", "")))
        rows.append(cells)
    return f'<section id="sweep"><h2>Batch sweep</h2>{charts_html}{html_table(header, rows)}</section>'
