"""`modelforge debug MODEL --calibration DATA`: per-layer error of the quantized model, worst layers first."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from modelforge.cli.flags import flag_groups
from modelforge.cli.groups import GrantFlags


@flag_groups
def debug(
    *,
    model: Annotated[Path, typer.Argument(help="Model file: .onnx, .pt2 (torch.export) or TorchScript.")],
    calibration: Annotated[
        Path, typer.Option("--calibration", "-c", help="Calibration data: .npz, .npy or an image folder.")
    ],
    eval_data: Annotated[
        Path | None,
        typer.Option("--eval-data", "-e", help="Compare layers on these samples (default: the calibration data)."),
    ] = None,
    preset: Annotated[str, typer.Option(help="Scheme: auto, cnn or transformer.")] = "auto",
    target: Annotated[str, typer.Option(help="Runtime: cpu or tensorrt.")] = "cpu",
    precision: Annotated[str, typer.Option(help="int8 or int4-weights.")] = "int8",
    method: Annotated[str, typer.Option(help="Calibration method: minmax, entropy or percentile.")] = "minmax",
    calibration_samples: Annotated[int | None, typer.Option(help="Calibrate on at most N samples.")] = None,
    samples: Annotated[int, typer.Option(help="Compare layers on this many samples.")] = 32,
    top: Annotated[int, typer.Option(help="Show this many layers (all with --json).")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print every layer as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    trust_model_code: GrantFlags.trust_model_code,
) -> None:
    """Quantize as `quantize` would, then compare every layer's output with the float model's: SQNR, the noise
    each layer adds, cosine. Worst layers first, so you see where accuracy goes (exclude them with
    `exclude_nodes`, or let accuracy gates do it)."""
    from modelforge.cli.console import RichProgress, err_console, out_console
    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.data import bind, open_dataset
    from modelforge.data.examples import example_inputs
    from modelforge.errors import InputError
    from modelforge.model.loader import load_model
    from modelforge.passes import PassContext, get_pass
    from modelforge.quantization.debug import compare_layers
    from modelforge.recipe.schema import DEFAULT_OPSET, DataSource

    progress = RichProgress(quiet=quiet or as_json)
    # The INT8 model itself is under study: no fallback, and no speed search that might ship float.
    config = {"preset": preset, "target": target, "precision": precision, "method": method, "fallback": False}
    config["speed_aware"] = False
    if calibration_samples is not None:
        config["calibration_samples"] = calibration_samples
    pass_cls = get_pass("quantize")
    try:
        pass_config = pass_cls.Config.model_validate(config)
    except Exception as exc:  # pydantic ValidationError: a bad flag value
        first = exc.errors(include_url=False)[0] if hasattr(exc, "errors") else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InputError(f"--{where.replace('_', '-') or 'option'}: {first['msg']}") from None

    with tempfile.TemporaryDirectory(prefix="modelforge-debug-") as tmp:
        workdir = Path(tmp)
        artifact = load_model(model, trust_code=trust_model_code)
        if artifact.format != "onnx":
            example = example_inputs(DataSource(path=calibration))
            artifact, _ = convert_to_onnx(artifact, workdir, DEFAULT_OPSET, example)
        first = artifact.io.inputs[0].shape if artifact.io and artifact.io.inputs else None
        calib = bind(open_dataset(DataSource(path=calibration), first), artifact.io, "calibration data")
        compare_on = calib
        if eval_data is not None:
            compare_on = bind(open_dataset(DataSource(path=eval_data), first), artifact.io, "eval data")
        stage = workdir / "quantize"
        stage.mkdir()
        ctx = PassContext(workdir=stage, calibration=calib, progress=progress)
        result = pass_cls(pass_config).run(artifact, ctx)
        if result.path == artifact.path:
            raise InputError(f"{model}: {ctx.metrics.get('skipped', 'nothing was quantized')}")
        prepared = stage / "float-prepared.onnx"
        count = min(samples, compare_on.num_samples)
        progress.start("Comparing layers", count)
        try:
            rows = compare_layers(prepared, result.path, compare_on, workdir, samples=count, advance=progress.advance)
        finally:
            progress.stop()

    scheme = ctx.metrics.get("scheme", {})
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": str(model),
                    "scheme": scheme,
                    "samples": count,
                    "layers": [r.record() for r in rows],
                },
                indent=2,
            )
        )
        return
    err_console.print(f"Scheme: {scheme.get('description', '?')} ({scheme.get('why', '')})", highlight=False)
    from dataclasses import asdict

    for renderable in layer_table([asdict(r) for r in rows[:top]], count, out_console.width):
        out_console.print(renderable)
    out_console.print(
        "Local SQNR: the layer alone on float inputs; added SQNR: the noise it adds to what it receives; "
        "SQNR: the error accumulated up to it. Lower is worse.",
        highlight=False,
    )


def layer_table(layers: list[dict], count: int, width: int) -> list:
    """The per-layer table (the --json records of the layers shown) fitted to `width` columns: node names
    wrap, numbers stay whole, and Max |err|, then the local and added SQNR are left out when too narrow."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from modelforge.cli.tables import fit, left_out_note

    def db(value: float | None) -> str:
        return "exact" if value is None else f"{value:.1f}"

    table = Table(
        title=f"Per-layer quantization error, worst first ({count} samples)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("#", "Node", "Op", "INT8", "Local SQNR dB", "Added SQNR dB", "SQNR dB", "Cosine", "Max |err|"):
        table.add_column(column, justify="left" if column in ("Node", "Op") else "right")
    for index, row in enumerate(layers, start=1):
        table.add_row(
            str(index),
            escape(row["node"]),
            row["op_type"],
            "yes" if row["quantized"] else "no",
            "-" if row["local_sqnr_db"] is None else f"{row['local_sqnr_db']:.1f}",
            db(row["added_sqnr_db"]),
            db(row["sqnr_db"]),
            f"{row['cosine']:.5f}",
            f"{row['max_abs_error']:.4g}",
        )
    table, dropped = fit(table, width, ("Max |err|", "Local SQNR dB", "Added SQNR dB"))
    return [table, *filter(None, [left_out_note(dropped, "see --json")])]
