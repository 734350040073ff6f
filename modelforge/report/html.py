"""report.html: one self-contained page (inline CSS and SVG, no scripts, nothing fetched when viewed).

It shows the summary and gates, the optimize search (when the report has one), the latency distributions of
both models, the batch sweep, accuracy vs size vs speed, output-comparison metrics, session cold start and
memory, per-stage details and the machine.
Everything is read from report.json, so `modelforge report OUTDIR --format html` re-renders it, and older
reports without the newer sections still render (those sections are left out).

This module assembles the page; each section is drawn by an html_*.py module (charts by charts/).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from modelforge.report.charts.histogram import histogram
from modelforge.report.html_details import machine_section, sessions_section, stages_section
from modelforge.report.html_latency import latency_section, report_sweep_section, slo_section, sweep_section
from modelforge.report.html_overview import gates_section, kpi_cards, page_header, summary_section
from modelforge.report.html_page import page
from modelforge.report.html_quality import outputs_section, tradeoff_section
from modelforge.report.html_search import search_section


def render_html(report: dict[str, Any]) -> str:
    from modelforge.report.distillation import distillation_section
    from modelforge.report.export import export_section
    from modelforge.report.pruning import pruning_section

    if report.get("cascade"):  # `modelforge cascade`: its own page (the curve, both models)
        from modelforge.report.cascade import render_cascade_html

        return render_cascade_html(report)
    verdict = "PASSED" if report["passed"] else "FAILED"
    evaluation = report.get("evaluation") or {}
    recipe = json.dumps(report.get("recipe", {}), indent=2)
    body = "".join(
        [
            page_header(report),
            kpi_cards(report),
            '<div class="grid2"><div>',
            summary_section(report),
            "</div><div>",
            gates_section(report),
            "</div></div>",
            search_section(report),
            latency_section(report),
            report_sweep_section(report),
            tradeoff_section(report),
            outputs_section(report),
            sessions_section(evaluation.get("sessions")),
            pruning_section(report),
            export_section(report),
            distillation_section(report),
            stages_section(report),
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
        "<div>" + histogram(e["samples_ms"], title=f"Latency distribution, batch {e['batch_size']}") + "</div>"
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
            + slo_section(latency)
            + "</section>",
            sessions_section(record.get("sessions")),
            machine_section(record.get("machine")),
            f"<footer>modelforge {escape(str(record.get('tool', {}).get('version', '')))} bench · self-contained "
            "page: no scripts, nothing loaded from the network</footer>",
        ]
    )
    return page(f"modelforge bench: {', '.join(names)}", body)
