"""`modelforge drift BASELINE DATA`: input drift (PSI, KS per feature) and confidence shift; exit 1 over a limit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import flag_groups
from modelforge.cli.groups import ReportFlags, RuntimeFlags


@flag_groups
def drift(
    *,
    baseline: Annotated[
        Path,
        typer.Argument(help="baseline_stats.json shipped with an export, or its folder (a Triton model's folder)."),
    ],
    data: Annotated[Path, typer.Argument(help="New inputs (.npz keyed by input name, or .npy).")],
    max_psi: Annotated[
        float,
        typer.Option(min=0, help="Fail (exit 1) if any feature's PSI, or the top-1 confidence's PSI, is above this."),
    ] = 0.2,
    max_ks: Annotated[float | None, typer.Option(min=0, max=1, help="Fail if any feature's KS is above this.")] = None,
    max_confidence_drop: Annotated[
        float | None, typer.Option(min=0, max=1, help="Fail if mean top-1 confidence fell by more than this.")
    ] = None,
    max_escalation_rise: Annotated[
        float,
        typer.Option(
            min=0,
            help="A cascade's baseline: fail if the escalation share rose by more than this many points and the "
            "rise is significant (one-sided two-proportion z-test, p < 0.001).",
        ),
    ] = 5.0,
    model: Annotated[
        Path | None, typer.Option(help="Model for the confidence shift (default: the one beside the baseline).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the JSON report goes.")] = Path("drift.json"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing JSON report.")] = False,
    top: Annotated[int, typer.Option(min=1, help="Worst features printed.")] = 10,
    threads: RuntimeFlags.threads,
    quiet: ReportFlags.quiet,
) -> int:
    """Score new data against an export's baseline: PSI and KS per input feature (channel for images), the
    shift of top-1 confidence, a cascade's escalation share; prints the worst features, writes JSON, exits 1
    over a threshold."""
    import json

    from modelforge.cli.console import err_console, out_console
    from modelforge.errors import EXIT_GATE_FAILED, EXIT_OK, InputError, OutputExistsError
    from modelforge.monitoring.report import drift_report

    if output.exists() and not force:
        raise OutputExistsError(str(output))
    from modelforge.monitoring.baseline import find_baseline

    baseline = find_baseline(baseline)
    if model is not None and not model.is_file():
        raise InputError(f"model {model} not found")
    report = drift_report(
        baseline,
        data,
        model_path=model,
        max_psi=max_psi,
        max_ks=max_ks,
        max_confidence_drop=max_confidence_drop,
        max_escalation_rise=max_escalation_rise,
        threads=threads,
    )
    from modelforge.safe_files import write_text

    try:  # a fresh temporary name renamed into place: never a predictable name a link could sit on
        write_text(output, json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
    if not quiet:
        from rich.table import Table

        table = Table(title=f"Drift of {data} vs {baseline} ({report['samples']} samples)")
        for column in ("input", "feature", "PSI", "KS", "KS p", "mean then", "mean now"):
            table.add_column(column, justify="left" if column == "input" else "right")
        for f in report["features"][:top]:
            table.add_row(
                f["input"],
                str(f["feature"]),
                f"{f['psi']:.3f}",
                f"{f['ks']:.3f}",
                f"{f['ks_p_value']:.2g}",
                f"{f['mean_baseline']:.4g}",
                f"{f['mean_now']:.4g}",
            )
        from modelforge.cli.tables import fit

        out_console.print(fit(table, out_console.width)[0])  # 80 columns: names wrap, numbers stay whole
        if report["confidence"]:
            c = report["confidence"]
            out_console.print(
                f"top-1 confidence: mean {c['mean_baseline']:.3f} -> {c['mean_now']:.3f} "
                f"(PSI {c['psi']:.3f}, KS {c['ks']:.3f}; against {c['reference']})",
                highlight=False,
            )
        if report.get("escalation"):
            e = report["escalation"]
            out_console.print(
                f"cascade escalation share: {100 * e['share_baseline']:.1f}% -> {100 * e['share_now']:.1f}% "
                f"({e['rise_pp']:+.1f} pt, z {e['z']:.2f}{', significant' if e['significant'] else ''})",
                highlight=False,
            )
        out_console.print(f"Wrote {output}", highlight=False, markup=False)
    failed = [
        f"{c['name']} {c['value'] if c['value'] is None else round(c['value'], 4)} > {c['threshold']}"
        for c in report["checks"]
        if not c["passed"]
    ]
    drifted = len(report["drifted_features"])
    if failed:
        err_console.print(f"[bold red]DRIFT[/bold red] ({'; '.join(failed)}; {drifted} feature(s) over PSI {max_psi})")
        return EXIT_GATE_FAILED
    err_console.print("[bold green]NO DRIFT[/bold green]", highlight=False)
    return EXIT_OK
