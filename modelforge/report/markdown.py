"""report.md: the summary a team pastes into a pull request."""

from __future__ import annotations

from typing import Any

from modelforge.report.format import gate_rows, summary_rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    models = report["models"]
    evaluation = report["evaluation"]
    lines = [
        f"# modelforge report: {verdict}",
        "",
        f"Baseline `{models['baseline']['path']}` ({models['baseline']['format']}) vs result "
        f"`{models['result']['path']}`.",
        "",
        *_table(("Metric", "Baseline", "Result", "Change"), summary_rows(report["summary"])),
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
    if report["gates"]:
        lines += [
            "",
            "## Gates",
            "",
            *_table(("Gate", "Threshold", "Value", "Verdict"), gate_rows(report["gates"])),
        ]
    lines += ["", "## Stages", ""]
    stage_rows = [
        (s["name"], f"{s['seconds']:.2f} s", ", ".join(f"{k}={v}" for k, v in s["metrics"].items()))
        for s in report["stages"]
    ]
    lines += _table(("Stage", "Time", "Details"), stage_rows)
    cpu = report["machine"]["cpu"]
    versions = report["machine"]["versions"]
    lines += [
        "",
        f"Machine: {cpu['model']}, {cpu['cores']} cores, INT8 instruction sets: "
        f"{', '.join(cpu['int8_instruction_sets']) or 'none'}; " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    return "\n".join(lines)
