"""`modelforge inspect MODEL`: inputs/outputs, op histogram, parameters, size."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from modelforge.cli.flags import flag_groups
from modelforge.cli.groups import GrantFlags


def describe(path: Path, trust_model_code: bool = False) -> dict[str, Any]:
    from modelforge.convert.to_onnx import convert_to_onnx
    from modelforge.model.loader import load_model
    from modelforge.model.onnx_model import is_quantized, load_onnx, op_histogram, opset_version, parameter_count
    from modelforge.recipe.schema import DEFAULT_OPSET

    artifact = load_model(path, trust_code=trust_model_code)
    info: dict[str, Any] = {"path": str(path), "format": artifact.format, "size_bytes": artifact.size_bytes()}
    with tempfile.TemporaryDirectory(prefix="modelforge-inspect-") as tmp:
        if artifact.format != "onnx":
            artifact, conversion = convert_to_onnx(artifact, Path(tmp), DEFAULT_OPSET)
            info["converted"] = conversion
        model = load_onnx(artifact.path, load_external_data=False)
        info.update(
            opset=opset_version(model),
            producer=f"{model.producer_name} {model.producer_version}".strip(),
            inputs=[{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in artifact.io.inputs],
            outputs=[{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in artifact.io.outputs],
            parameters=parameter_count(model),
            nodes=len(model.graph.node),
            quantized=is_quantized(model),
            ops=op_histogram(model),
            metadata={p.key: p.value for p in model.metadata_props},
        )
    return info


@flag_groups
def inspect(
    *,
    model: Annotated[
        Path, typer.Argument(help="Model file: .onnx, .pt2, TorchScript, Keras (.keras/.h5) or a SavedModel folder.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    trust_model_code: GrantFlags.trust_model_code,
) -> None:
    """Show a model's inputs and outputs (shapes, dtypes), operator histogram, parameter count and size."""
    info = describe(model, trust_model_code)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from modelforge.cli.console import out_console
    from modelforge.report.format import fmt_bytes

    out_console.print(
        f"[bold]{escape(info['path'])}[/bold]  {info['format']}, opset {info['opset']}, {info['nodes']} nodes, "
        f"{info['parameters']:,} parameters, {fmt_bytes(info['size_bytes'])}"
        + (", quantized" if info["quantized"] else ""),
        highlight=False,
    )
    io = Table(title="Inputs and outputs")
    for column in ("Kind", "Name", "Dtype", "Shape"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            shape = "[" + ", ".join("?" if d is None else str(d) for d in t["shape"]) + "]"
            io.add_row(kind[:-1], t["name"], t["dtype"], escape(shape))
    from modelforge.cli.tables import fit

    out_console.print(fit(io, out_console.width)[0])  # 80 columns: long names wrap, shapes stay whole
    ops = Table(title="Operators")
    ops.add_column("Op type")
    ops.add_column("Count", justify="right")
    for op, count in info["ops"].items():
        ops.add_row(op, str(count))
    out_console.print(ops)
