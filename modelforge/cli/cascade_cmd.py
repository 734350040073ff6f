"""`modelforge cascade --small S --large L --eval-data DATA -o OUT`: one ONNX graph where the small model answers and
the large one only takes the rows the small one is unsure of; the threshold chosen on the eval data's curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import flag_groups
from modelforge.cli.groups import GrantFlags, ReportFlags, RuntimeFlags


@flag_groups
def cascade(
    *,
    small: Annotated[
        Path,
        typer.Option(help="The fast model: ONNX, .pt2, Keras, a Hugging Face folder, or an earlier output folder."),
    ],
    large: Annotated[Path, typer.Option(help="The accurate model, with the same inputs and classes.")],
    eval_data: Annotated[
        Path, typer.Option(help="Eval data (.npz keyed by input name, with `labels` for accuracy); the curve's data.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (model.onnx = the cascade graph).")],
    confidence: Annotated[
        str, typer.Option(help="The small model's confidence: max-prob (top softmax), margin (top-1 - top-2), entropy.")
    ] = "max-prob",
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Fewest escalations within this many points of the large model's accuracy (the default rule, at 0.5).",
        ),
    ] = None,
    max_mean_latency_ms: Annotated[
        float | None,
        typer.Option(min=0, help="Instead: the most accurate threshold whose measured mean latency is within this."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Instead: this threshold, in (0, 1) (rows below it escalate).")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Batch size of the latency measurement.")] = 1,
    target: Annotated[
        str, typer.Option(help="onnxruntime, or openvino (also writes model.xml/.bin, checked to run unchanged).")
    ] = "onnxruntime",
    latency_seconds: Annotated[
        float, typer.Option(min=0.1, help="Time budget of the interleaved latency measurement.")
    ] = 10.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output (kept as OUT.previous).")] = False,
    threads: RuntimeFlags.threads,
    trust_model_code: GrantFlags.trust_model_code,
    quiet: ReportFlags.quiet,
) -> int:
    """Cascade two classifiers into one ONNX graph: the small model answers, the large one takes the rows whose
    confidence is below a threshold (a graph input with the chosen default). Reports the whole curve (accuracy,
    escalation share, measured mean and p99 latency), writes baseline_stats.json with the escalation share for
    `modelforge drift`. Exit 1 when no threshold meets the rule."""
    from modelforge.cli.console import RichProgress, err_console, out_console
    from modelforge.errors import EXIT_GATE_FAILED, EXIT_OK
    from modelforge.run.cascade import CascadeSettings, run_cascade

    cwd = Path.cwd()
    settings = CascadeSettings(
        small=cwd / small,
        large=cwd / large,
        eval_data=cwd / eval_data,
        output=output,
        confidence=confidence,
        max_accuracy_drop=max_accuracy_drop,
        max_mean_latency_ms=max_mean_latency_ms,
        threshold=threshold,
        batch=batch,
        threads=threads,
        target=target,
        force=force,
        latency_seconds=latency_seconds,
        trust_model_code=trust_model_code,
    )
    report = run_cascade(settings, RichProgress(quiet=quiet))
    s, c = report["summary"], report["cascade"]
    if not quiet:
        acc = "n/a" if s["accuracy_result"] is None else f"{100 * s['accuracy_result']:.2f}%"
        base = "n/a" if s["accuracy_baseline"] is None else f"{100 * s['accuracy_baseline']:.2f}%"
        out_console.print(
            f"threshold {c['chosen']['threshold']:.4g} ({c['confidence']}): {100 * s['escalated_share']:.1f}% "
            f"escalated; accuracy {acc} (large {base}); mean {s['latency_mean_ms_result']:.3f} ms vs large "
            f"{s['latency_mean_ms_baseline']:.3f} ms at batch {batch} (speed-up {s['speedup']:.2f}x)",
            highlight=False,
            markup=False,
        )
        out_console.print(f"Wrote {output}/", highlight=False, markup=False)
    if not report["passed"]:
        err_console.print(f"[bold red]FAILED[/bold red] ({c['rule_detail']})", highlight=False)
        return EXIT_GATE_FAILED
    err_console.print("[bold green]PASSED[/bold green]", highlight=False)
    return EXIT_OK
