"""report.md: the summary a team pastes into a pull request."""

from __future__ import annotations

from typing import Any

from modelforge.report.format import (
    fmt_bytes,
    fmt_float,
    fmt_percent,
    fmt_pp_change,
    fmt_size_ratio,
    fmt_speedup,
    fmt_value,
    gate_rows,
    md_table,
    model_label,
    summary_rows,
    verdict_notes,
)

_table = md_table  # every table of this module escapes its cells there


def render_markdown(report: dict[str, Any]) -> str:
    if report.get("cascade"):  # `modelforge cascade`: its own summary (the measured thresholds, both models)
        from modelforge.report.cascade import render_cascade_markdown

        return render_cascade_markdown(report)
    verdict = "PASSED" if report["passed"] else "FAILED"
    models = report["models"]
    evaluation = report["evaluation"]
    lines = [
        f"# modelforge report: {verdict}",
        "",
        f"Baseline `{models['baseline']['path']}` ({model_label(models['baseline'])}) vs result "
        f"`{models['result']['path']}`.",
        "",
        *_table(("Metric", "Baseline", "Result", "Change"), summary_rows(report["summary"])),
        *(["", *verdict_notes(report)] if verdict_notes(report) else []),
        "",
        f"Evaluated on {evaluation['metrics']['samples']} samples from {evaluation['data']}.",
    ]
    latency = evaluation.get("latency")
    if latency:
        lines.append(
            f"Latency: batch {latency['batch_size']}, {latency['threads']} threads, {latency['baseline']['runs']} "
            f"runs each ({latency['method']}); p90 {latency['baseline']['p90_ms']:.3f} / "
            f"{latency['result']['p90_ms']:.3f} ms, p99 {latency['baseline']['p99_ms']:.3f} / "
            f"{latency['result']['p99_ms']:.3f} ms."
        )
    runtimes = evaluation.get("runtimes")
    if runtimes:
        lines.append(
            "Runtimes: "
            + "; ".join(
                f"{side} on {info['runtime']} {info['version']} ({info['device']}, {info['precision']}, "
                f"{info['threads']} threads)"
                for side, info in runtimes.items()
            )
            + "."
        )
    if isinstance(report.get("search"), dict):
        from modelforge.report.markdown_search import search_lines

        lines += search_lines(report["search"])
    if report["gates"]:
        lines += [
            "",
            "## Gates",
            "",
            *_table(("Gate", "Threshold", "Value", "Verdict"), gate_rows(report["gates"])),
        ]
    lines += _latency_profile_lines(evaluation)
    lines += _output_lines(evaluation.get("metrics") or {})
    lines += ["", "## Stages", ""]
    stage_rows = [
        (
            s["name"],
            f"{s['seconds']:.2f} s",
            ", ".join(f"{k}={fmt_value(v)}" for k, v in s["metrics"].items() if not isinstance(v, dict | list)),
        )
        for s in report["stages"]
    ]
    lines += _table(("Stage", "Time", "Details"), stage_rows)
    for stage in report["stages"]:
        lines += _stage_detail_lines(stage)
    cpu = report["machine"]["cpu"]
    versions = report["machine"]["versions"]
    lines += [
        "",
        f"Machine: {cpu['model']}, {cpu['cores']} cores, INT8 instruction sets: "
        f"{', '.join(cpu['int8_instruction_sets']) or 'none'}; " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A detail outside a table (list items): rounded, on one line; tables escape their cells in _table."""
    return fmt_value(value).replace("\n", " ")


def _flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _stage_detail_lines(stage: dict[str, Any]) -> list[str]:
    """A pass's structured findings (scheme, fallback, per-layer tables) as readable sub-sections."""
    lines: list[str] = []
    for key, value in stage["metrics"].items():
        if not isinstance(value, dict | list):
            continue
        lines += ["", f"### {stage['name']}: {key.replace('_', ' ')}", ""]
        if isinstance(value, dict):
            for name, item in _flatten(value):
                if isinstance(item, list) and item and all(isinstance(row, dict) for row in item):
                    lines += [f"- {name}:", "", *_dict_table(item), ""]
                else:
                    lines.append(f"- {name}: {_cell(item) if item != [] else 'none'}")
        elif value and all(isinstance(row, dict) for row in value):
            lines += _dict_table(value)
        else:
            lines.append(", ".join(map(_cell, value)) or "none")
    return lines


def _dict_table(rows: list[dict[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return _table(tuple(columns), [tuple(_cell(row.get(c, "")) for c in columns) for row in rows])


def _ms(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if value < 0.1 else f"{value:.3f}")


def sweep_table(sweep: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(n for e in sweep for n in e["stats"]))
    header = ("Batch", *(f"{n} p50 / p99 ms" for n in names), *(f"{n} samples/s" for n in names))
    rows = []
    for e in sweep:
        stats = [e["stats"].get(n) or {} for n in names]
        rows.append(
            (
                str(e["batch_size"]),
                *(f"{_ms(st.get('p50_ms'))} / {_ms(st.get('p99_ms'))}" for st in stats),
                *(fmt_float(st.get("throughput_per_s"), 0) for st in stats),
            )
        )
    return _table(header, rows)


def slo_lines(slo: dict[str, Any] | None) -> list[str]:
    from modelforge.measure.profile import slo_values_text

    if not slo:
        return []
    limits = ", ".join(f"{stat.removesuffix('_ms')} <= {limit:g} ms" for stat, limit in slo["limits_ms"].items())
    rows = []
    for name, verdict in slo["models"].items():
        met = {None: "not measured", True: "meets", False: "misses"}[verdict.get("met")]
        largest = verdict.get("largest_batch_meeting")
        values = slo_values_text(verdict, lambda v: f"{_ms(v)} ms")
        rows.append((name, values or "n/a", met, "none" if largest is None else str(largest)))
    judged = f" Judged on the {slo['judged_on']} (bound)." if slo.get("judged_on") else ""
    return [
        "",
        f"Latency SLO {limits} at batch {slo['batch_size']}:{judged}",
        "",
        *_table(("Model", "Measured", "SLO", "Largest batch meeting it"), rows),
    ]


def _latency_profile_lines(evaluation: dict[str, Any]) -> list[str]:
    latency = evaluation.get("latency") or {}
    sessions = evaluation.get("sessions") or {}
    lines: list[str] = []
    if latency.get("sweep"):
        lines += ["", "## Latency profile", ""]
        if latency.get("stop_rule"):
            lines += [f"Stop rule: {latency['stop_rule']}.", ""]
        lines += sweep_table(latency["sweep"])
        lines += slo_lines(latency.get("slo"))
    if sessions.get("baseline"):
        rows = [
            (
                name,
                f"{sessions[name]['create_ms']:.1f} ms",
                f"{sessions[name]['first_run_ms']:.2f} ms",
                fmt_bytes(sessions[name].get("peak_rss_growth_bytes")),
            )
            for name in ("baseline", "result")
            if name in sessions
        ]
        lines += ["", *_table(("Session", "Creation (cold start)", "First run", "Peak memory growth"), rows)]
    return lines


def _output_lines(metrics: dict[str, Any]) -> list[str]:
    rows = []
    if metrics.get("top5_accuracy_result") is not None:
        rows.append(
            (
                "Top-5 accuracy",
                fmt_percent(metrics["top5_accuracy_baseline"]),
                fmt_percent(metrics["top5_accuracy_result"]),
            )
        )
    conf_a, conf_b = metrics.get("confidence_baseline"), metrics.get("confidence_result")
    if conf_a and conf_b:
        rows.append(("Top-1 confidence mean", fmt_percent(conf_a["mean"]), fmt_percent(conf_b["mean"])))
        rows.append(("Top-1 confidence p5", fmt_percent(conf_a.get("p5")), fmt_percent(conf_b.get("p5"))))
    if "sqnr_db" in metrics:
        sqnr = metrics["sqnr_db"]
        identical = metrics.get("max_abs_error", 0) == 0  # null SQNR: identical outputs, or NaN in them
        rows.append(("SQNR", "", f"{sqnr:.1f} dB" if sqnr is not None else "identical" if identical else "n/a"))
    if metrics.get("max_abs_error") is not None:
        rows.append(("Max abs error", "", f"{metrics['max_abs_error']:.4g}"))
    for spec, value in (metrics.get("custom") or {}).items():
        if isinstance(value, dict):
            rows += [(f"{spec} {k}", "", fmt_float(v, 6)) for k, v in value.items()]
        else:
            rows.append((spec, "", fmt_float(value, 6)))
    if not rows:
        return []
    return ["", "## Output comparison", "", *_table(("Metric", "Baseline", "Result"), rows)]


def render_step_summary(report: dict[str, Any]) -> str:
    """A compact block for CI job summaries ($GITHUB_STEP_SUMMARY): verdict, summary, gates, latency line."""
    s = report["summary"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    icon = ":white_check_mark:" if report["passed"] else ":x:"
    lines = [
        f"### {icon} modelforge: {verdict}",
        "",
        f"`{report['models']['baseline']['path']}` -> `{report['models']['result']['path']}`: "
        + (
            "the original shipped unchanged"  # the same file measured twice: no speed-up or size figure
            if s.get("original_shipped")
            else f"{fmt_speedup(s.get('speedup'))}, {fmt_size_ratio(s.get('size_ratio'))}"
        )
        + (f", accuracy {fmt_pp_change(s['accuracy_drop_pp'])}" if s.get("accuracy_drop_pp") is not None else ""),
        "",
        *_table(("Metric", "Baseline", "Result", "Change"), summary_rows(s)),
        *(["", *verdict_notes(report)] if verdict_notes(report) else []),
    ]
    if report["gates"]:
        lines += ["", *_table(("Gate", "Threshold", "Value", "Verdict"), gate_rows(report["gates"]))]
    slo = ((report.get("evaluation") or {}).get("latency") or {}).get("slo")
    lines += slo_lines(slo)
    return "\n".join(lines) + "\n\n"


def render_bench_markdown(record: dict[str, Any]) -> str:
    """`modelforge bench` as Markdown: per-batch latency table, sessions, SLO, machine."""
    latency = record["latency"]
    cpu = record["machine"]["cpu"]
    lines = [
        "### modelforge bench",
        "",
        f"{latency['threads']} threads, {record['inputs']}; stop rule: {latency['stop_rule']}.",
        "",
        *sweep_table(latency["sweep"]),
    ]
    rows = [
        (
            name,
            f"{load['create_ms']:.1f} ms",
            f"{load['first_run_ms']:.2f} ms",
            fmt_bytes(load["peak_rss_growth_bytes"]),
        )
        for name, load in record["sessions"].items()
        if isinstance(load, dict)
    ]
    lines += ["", *_table(("Model", "Session creation", "First run", "Peak memory growth"), rows)]
    lines += slo_lines(latency.get("slo"))
    lines += [
        "",
        f"Machine: {cpu['model']}, {cpu['cores']} cores, instruction sets: "
        f"{', '.join(cpu.get('instruction_sets') or cpu['int8_instruction_sets']) or 'none'}.",
        "",
    ]
    return "\n".join(lines) + "\n"
