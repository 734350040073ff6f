"""`modelforge report OUTDIR --format html|md|json|junit|summary`: re-render a stored report without re-running."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import flag_groups
from modelforge.cli.groups import ReportFlags


class ReportFormat(StrEnum):
    html = "html"
    md = "md"
    json = "json"
    junit = "junit"
    summary = "summary"


def render(report: dict, fmt: ReportFormat) -> str:
    if fmt is ReportFormat.html:
        from modelforge.report.html import render_html

        return render_html(report)
    if fmt is ReportFormat.md:
        from modelforge.report.markdown import render_markdown

        return render_markdown(report)
    if fmt is ReportFormat.junit:
        from modelforge.report.junit import render_junit

        return render_junit(report)
    if fmt is ReportFormat.summary:
        from modelforge.report.markdown import render_step_summary

        return render_step_summary(report)
    return json.dumps(report, indent=2) + "\n"


@flag_groups
def report(
    *,
    source: Annotated[Path, typer.Argument(metavar="OUTDIR", help="An output directory or its report.json.")],
    fmt: Annotated[
        ReportFormat,
        typer.Option("--format", "-f", help="html, md (pull-request comment), json, junit, or summary (CI job)."),
    ] = ReportFormat.md,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    summary_file: ReportFlags.summary_file,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when the report's gates failed (as the run did).")
    ] = False,
) -> int:
    """Render a stored report.json again (e.g. with a newer modelforge, or in another format)."""
    from modelforge.errors import EXIT_GATE_FAILED, EXIT_OK
    from modelforge.report.ci import append_summary
    from modelforge.report.compare import load_report

    stored = load_report(source)
    text = render(stored, fmt)
    if output is not None:
        from modelforge.report.ci import write_file

        write_file(output, text)
    else:
        typer.echo(text, nl=False)
    if summary_file is not None:
        from modelforge.report.markdown import render_step_summary

        append_summary(summary_file, render_step_summary(stored))
    return EXIT_GATE_FAILED if exit_code and not stored["passed"] else EXIT_OK
