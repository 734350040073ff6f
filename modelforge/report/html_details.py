"""How the run went, in report.html and the bench page: session cold start and memory, each stage's time and
details, and the machine it ran on."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from modelforge.report.charts.bars import hbars
from modelforge.report.format import fmt_bytes, fmt_value
from modelforge.report.html_cells import fmt_ms, html_table, td


def sessions_section(sessions: dict[str, Any] | None) -> str:
    if not sessions:
        return ""
    names = [n for n, v in sessions.items() if isinstance(v, dict)]
    rows = []
    for name in names:
        s = sessions[name]
        rows.append(
            [
                td(name),
                td(fmt_ms(s.get("create_ms")), f"sessions.{name}.create_ms", s.get("create_ms")),
                td(fmt_ms(s.get("first_run_ms")), f"sessions.{name}.first_run_ms", s.get("first_run_ms")),
                td(
                    fmt_bytes(s.get("peak_rss_growth_bytes")),
                    f"sessions.{name}.peak_rss_growth_bytes",
                    s.get("peak_rss_growth_bytes"),
                ),
                td(
                    fmt_bytes(s.get("process_peak_rss_bytes")),
                    f"sessions.{name}.process_peak_rss_bytes",
                    s.get("process_peak_rss_bytes"),
                ),
            ]
        )
    return (
        '<section id="sessions"><h2>Sessions: cold start and memory</h2>'
        + html_table(
            ["Model", "Session creation", "First run", "Peak memory of the session", "Serving process peak"], rows
        )
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
        rows = [[td(_plain(row.get(c, ""))) for c in columns] for row in value]
        return html_table(columns, rows, "records")
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


def stages_section(report: dict[str, Any]) -> str:
    stages = report.get("stages") or []
    if not stages:
        return ""
    chart = hbars(
        "stages", [(s["name"], float(s["seconds"])) for s in stages], title="Time per stage", unit="s", width=1080
    )
    rows = []
    for s in stages:
        details = " ".join(_stage_detail(k, v) for k, v in (s.get("metrics") or {}).items())
        rows.append(
            [
                td(s["name"]),
                td(f"{s.get('input_format', '')} → {s.get('output_format', '')}"),
                td(f"{s['seconds']:.2f} s", f"stage.{s['name']}.seconds", s["seconds"]),
                f'<td class="left details">{details}</td>',
            ]
        )
    table = html_table(["Stage", "Formats", "Time", "Details"], rows).replace(
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
