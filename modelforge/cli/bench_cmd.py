"""`modelforge bench MODEL [MODEL...]`: latency profile (batch sweep, cold start, memory) of ONNX models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import flag_groups
from modelforge.cli.groups import ReportFlags, RuntimeFlags


def _batch_sizes(text: str) -> list[int]:
    from modelforge.errors import InputError

    try:
        sizes = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise InputError(f"--batch-sizes {text!r}: expected comma-separated integers, e.g. 1,8,32,64") from None
    if not sizes or sizes[0] <= 0:
        raise InputError(f"--batch-sizes {text!r}: batch sizes must be positive")
    return sizes


def _names(text: str, flag: str) -> list[str]:
    from modelforge.errors import InputError

    names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names:
        raise InputError(f"{flag} {text!r}: expected comma-separated names, e.g. onnxruntime,openvino")
    return names


def _dims(values: list[str]) -> dict[str, int]:
    from modelforge.errors import InputError

    dims = {}
    for value in values:
        name, _, size = value.partition("=")
        if not name or not size.isdigit() or int(size) <= 0:
            raise InputError(f"--dim {value!r}: expected NAME=SIZE, e.g. sequence=128")
        dims[name] = int(size)
    return dims


@flag_groups
def bench(
    *,
    models: Annotated[list[Path], typer.Argument(metavar="MODEL...", help="ONNX models to measure side by side.")],
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes to sweep, comma-separated.")] = "1,8,32,64",
    threads: RuntimeFlags.threads,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs of each model per batch size.")] = 10,
    min_runs: Annotated[
        int, typer.Option(min=1, help="Timed runs of each model at least, per batch size (1000 with --slo-p99-ms).")
    ] = 50,
    max_seconds: Annotated[float, typer.Option(min=0.001, help="Time budget per batch size.")] = 10.0,
    stable_within: Annotated[
        float, typer.Option(min=0.0001, max=0.99, help="Stop once the p50 is stable within this fraction.")
    ] = 0.02,
    data: Annotated[
        Path | None, typer.Option(help="Inputs from a .npz/.npy file (default: seeded random tensors).")
    ] = None,
    dim: Annotated[
        list[str] | None, typer.Option(help="Size of a symbolic non-batch axis, NAME=SIZE (repeatable).")
    ] = None,
    seed: RuntimeFlags.seed,
    slo_p99_ms: Annotated[float | None, typer.Option(help="SLO: p99 latency limit (ms) at --slo-batch.")] = None,
    slo_p50_ms: Annotated[float | None, typer.Option(help="SLO: p50 latency limit (ms) at --slo-batch.")] = None,
    slo_batch: Annotated[int, typer.Option(min=1, help="Batch size the SLO applies to.")] = 1,
    runtime: Annotated[
        str, typer.Option(help="Runtimes to measure each model on, comma-separated: onnxruntime, openvino.")
    ] = "onnxruntime",
    precision: Annotated[
        str | None,
        typer.Option(
            help="Precisions, comma-separated: fp32, bf16 (OpenVINO, CPUs with native bf16), int8 (quantized "
            "models). Default: each model's own (int8 if quantized, else fp32)."
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the profile as JSON here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML page with charts here.")] = None,
    quiet: ReportFlags.quiet,
    as_json: ReportFlags.as_json,
    summary_file: ReportFlags.summary_file,
) -> int:
    """Latency profile of ONNX models x runtimes x precisions: p50/p90/p99/mean/std and throughput per batch size,
    interleaved runs, session creation time and peak memory. Exit 1 when a model misses the SLO given."""
    from rich.markup import escape

    from modelforge.cli.console import RichProgress, err_console, out_console
    from modelforge.errors import EXIT_GATE_FAILED, EXIT_OK
    from modelforge.evaluate.bench import BenchSettings, run_bench
    from modelforge.report.ci import append_summary, write_file
    from modelforge.report.markdown import render_bench_markdown

    settings = BenchSettings(
        batch_sizes=_batch_sizes(batch_sizes),
        threads=threads,
        warmup=warmup,
        min_runs=min_runs,
        max_seconds=max_seconds,
        stable_within=stable_within,
        data=data,
        dims=_dims(dim or []),
        seed=seed,
        slo_p99_ms=slo_p99_ms,
        slo_p50_ms=slo_p50_ms,
        slo_batch=slo_batch,
        runtimes=_names(runtime, "--runtime"),
        precisions=_names(precision, "--precision") if precision is not None else None,
    )
    record = run_bench(models, settings, RichProgress(quiet=quiet or as_json))
    text = json.dumps(record, indent=2) + "\n"
    if output is not None:
        write_file(output, text)
    if html is not None:
        from modelforge.report.html import render_bench_html

        write_file(html, render_bench_html(record))
    if summary_file is not None:
        append_summary(summary_file, render_bench_markdown(record))
    if as_json:
        typer.echo(text, nl=False)
    elif not quiet:
        for table in bench_tables(record):
            out_console.print(table)
        cpu = record["machine"]["cpu"]
        out_console.print(
            f"Machine: {cpu['model']} ({cpu['arch']}), {cpu['cores']} cores, instruction sets: "
            f"{', '.join(cpu.get('instruction_sets') or cpu['int8_instruction_sets']) or 'none'}; "
            + ", ".join(f"{k} {v}" for k, v in record["machine"]["versions"].items()),
            highlight=False,
        )
    if not record["passed"]:
        missed = [n for n, v in record["latency"]["slo"]["models"].items() if not v["met"]]
        err_console.print(f"[bold red]FAILED[/bold red] (SLO missed: {escape(', '.join(missed))})", highlight=False)
        return EXIT_GATE_FAILED
    if record["latency"]["slo"]:
        err_console.print("[bold green]PASSED[/bold green] (SLO met)")
    return EXIT_OK


def bench_tables(record: dict, width: int | None = None) -> list:
    """The tables `bench` prints, fitted to `width` columns (the terminal's): names wrap, numbers stay whole,
    and the latency columns that matter least (runs, mean, p90) are left out when even that is too wide."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from modelforge.cli.console import out_console
    from modelforge.cli.tables import fit, left_out_note
    from modelforge.measure.profile import slo_values_text
    from modelforge.report.format import fmt_bytes

    width = width or out_console.width

    stopped = ", ".join(f"batch {e['batch_size']}: {e['stopped']}" for e in record["latency"]["sweep"])
    latency = Table(
        # Escaped: model names and data paths may hold [brackets], which rich would drop as style tags.
        title=escape(f"Latency in ms ({record['latency']['threads']} threads; {record['inputs']})"),
        caption=f"stopped: {stopped}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    # std is in the JSON and the HTML page.
    for column in ("Batch", "Model", "p50", "p90", "p99", "mean", "samples/s", "runs"):
        latency.add_column(column, justify="left" if column == "Model" else "right")
    for entry in record["latency"]["sweep"]:
        for index, (name, st) in enumerate(entry["stats"].items()):
            latency.add_row(
                str(entry["batch_size"]) if index == 0 else "",
                escape(name),
                *(f"{st[k]:.3g}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")),
                f"{st['throughput_per_s']:,.0f}",
                str(st["runs"]),
            )
        latency.add_section()
    sessions = Table(
        title="Sessions: cold start (ms) and peak memory", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for column in ("Model", "Size", "Create", "1st run", "Session", "Process"):
        sessions.add_column(column, justify="left" if column == "Model" else "right")
    sizes = {m["name"]: m["size_bytes"] for m in record["models"]}
    sizes |= {label: sizes.get(r["model"]) for label, r in record.get("runtimes", {}).items()}
    for name, load in record["sessions"].items():
        if isinstance(load, dict):
            sessions.add_row(
                escape(name),
                fmt_bytes(sizes.get(name)),
                f"{load['create_ms']:.1f}",
                f"{load['first_run_ms']:.2f}",
                fmt_bytes(load["peak_rss_growth_bytes"]),
                fmt_bytes(load.get("process_peak_rss_bytes")),
            )
    latency, dropped = fit(latency, width, ("runs", "mean", "p90"))
    tables = [latency, *filter(None, [left_out_note(dropped, "see --json or --html")]), fit(sessions, width)[0]]
    if record.get("skipped"):
        skipped = Table(title="Not measured", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for column in ("Model", "Runtime", "Precision", "Why"):
            skipped.add_column(column)
        for row in record["skipped"]:
            skipped.add_row(escape(row["model"]), row["runtime"], row["precision"], escape(row["why"]))
        tables.append(fit(skipped, width)[0])
    slo = record["latency"]["slo"]
    if slo:
        limits = ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in slo["limits_ms"].items())
        table = Table(
            title=f"SLO: {limits} at batch {slo['batch_size']}",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        for column in ("Model", "Measured", "Verdict", "Largest batch meeting it"):
            table.add_column(column)
        for name, verdict in slo["models"].items():
            values = slo_values_text(verdict, lambda v: f"{v:.4f}") or "not measured"
            met = {True: "[green]meets[/green]", False: "[red]misses[/red]", None: "not measured"}[verdict["met"]]
            largest = verdict["largest_batch_meeting"]
            table.add_row(escape(name), values, met, "none" if largest is None else str(largest))
        tables.append(fit(table, width)[0])
    return tables
