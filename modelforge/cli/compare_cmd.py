"""`modelforge compare A B`: two reports (or output directories) side by side; exit 1 when B regresses."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import flag_groups
from modelforge.cli.groups import ReportFlags
from modelforge.report.ci import with_error_outputs


class CompareFormat(StrEnum):
    table = "table"
    md = "md"
    json = "json"


@with_error_outputs
@flag_groups
def compare(
    *,
    report_a: Annotated[Path, typer.Argument(metavar="A", help="Reference: report.json or an output directory.")],
    report_b: Annotated[Path, typer.Argument(metavar="B", help="Candidate: report.json or an output directory.")],
    max_accuracy_drop: Annotated[
        float | None, typer.Option(help="Fail (exit 1) if B's top-1 accuracy is more than PP points below A's.")
    ] = None,
    max_agreement_drop: Annotated[
        float | None, typer.Option(help="Fail if B's top-1 agreement is more than PP points below A's.")
    ] = None,
    max_cosine_drop: Annotated[
        float | None, typer.Option(help="Fail if B's mean output cosine is more than X below A's.")
    ] = None,
    max_latency_increase: Annotated[
        float | None, typer.Option(help="Fail if B's result p50 latency is more than PCT percent above A's.")
    ] = None,
    max_speedup_drop: Annotated[
        float | None,
        typer.Option(help="Fail if B's speed-up is more than PCT percent below A's (robust across machines)."),
    ] = None,
    max_size_increase: Annotated[
        float | None, typer.Option(help="Fail if B's result file is more than PCT percent larger than A's.")
    ] = None,
    require_passed: Annotated[bool, typer.Option("--require-passed", help="Fail if B's own gates failed.")] = False,
    fmt: Annotated[CompareFormat, typer.Option("--format", help="Output on stdout: table, md or json.")] = (
        CompareFormat.table
    ),
    summary_file: ReportFlags.summary_file,
    junit: ReportFlags.junit,
) -> int:
    """Compare every summary metric of two reports; exit 1 when B is worse than A beyond the given tolerances."""
    from rich.markup import escape

    from modelforge.cli.console import err_console, out_console
    from modelforge.errors import EXIT_GATE_FAILED, EXIT_OK
    from modelforge.report.ci import append_summary, write_junit
    from modelforge.report.compare import (
        Tolerances,
        compare_reports,
        fmt_delta,
        fmt_value,
        load_report,
        render_compare_markdown,
    )
    from modelforge.report.junit import render_junit_checks

    tolerances = Tolerances(
        max_accuracy_drop=max_accuracy_drop,
        max_agreement_drop=max_agreement_drop,
        max_cosine_drop=max_cosine_drop,
        max_latency_increase=max_latency_increase,
        max_speedup_drop=max_speedup_drop,
        max_size_increase=max_size_increase,
        require_passed=require_passed,
    )
    result = compare_reports(load_report(report_a), load_report(report_b), tolerances)
    markdown = render_compare_markdown(result, str(report_a), str(report_b))
    if fmt is CompareFormat.json:
        typer.echo(json.dumps(result, indent=2))
    elif fmt is CompareFormat.md:
        typer.echo(markdown, nl=False)
    else:
        from rich.table import Table

        table = Table(title=escape(f"A = {report_a}   B = {report_b}"))
        for column in ("Metric", "A", "B", "Delta (B - A)", ""):
            table.add_column(column, justify="left" if column == "Metric" else "right")
        styles = {"better": "[green]better[/green]", "worse": "[red]worse[/red]"}
        for row in result["rows"] + [r for r in result["details"] if r["a"] is not None or r["b"] is not None]:
            table.add_row(
                escape(row["label"]),
                fmt_value(row["kind"], row["a"]),
                fmt_value(row["kind"], row["b"]),
                fmt_delta(row),
                styles.get(row["status"], ""),
            )
        for check in result["checks"]:
            value = "n/a" if check["value"] is None else f"{check['value']:.4g}"
            verdict = "[green]PASSED[/green]" if check["passed"] else "[red]FAILED[/red]"
            table.add_row(f"tolerance {check['name']}", f"max {check['threshold']:g}", value, check["metric"], verdict)
        from modelforge.cli.tables import fit

        out_console.print(fit(table, out_console.width)[0])  # 80 columns: names wrap, numbers stay whole
    for note in result["notes"]:
        err_console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    if summary_file is not None:
        append_summary(summary_file, markdown + "\n")
    if junit is not None:
        write_junit(junit, render_junit_checks("modelforge compare", result["checks"], classname="modelforge.compare"))
    failed = [c["name"] for c in result["checks"] if not c["passed"]]
    if failed:
        err_console.print(f"[bold red]REGRESSED[/bold red] ({', '.join(failed)})", highlight=False)
        return EXIT_GATE_FAILED
    err_console.print("[bold green]PASSED[/bold green]" + ("" if result["checks"] else " (no tolerances given)"))
    return EXIT_OK
