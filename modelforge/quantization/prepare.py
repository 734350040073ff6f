"""Prepare a float ONNX model for quantization: weights as initializers, fused and shape-inferred.

Calibration and quantization must see the same graph that will run: folding BatchNorm into Conv and
fusing first means one QDQ pair per fused op instead of one per original op (fewer requantizations).
"""

from __future__ import annotations

from pathlib import Path

from modelforge.errors import PassError
from modelforge.onnx_model import constants_to_initializers, load_onnx, save_onnx


def prepare_for_quantization(source: Path, workdir: Path, pass_name: str) -> tuple[Path, dict[str, int]]:
    """Returns the prepared model's path and what was done (for the stage record)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = load_onnx(source)
    moved = constants_to_initializers(model)
    named = name_unnamed_nodes(model)
    staged = workdir / "float-staged.onnx"
    save_onnx(model, staged)
    del model
    prepared = workdir / "float-prepared.onnx"
    large = staged.stat().st_size > (1 << 30) or (workdir / (staged.name + ".data")).exists()
    options = dict(
        save_as_external_data=large,
        all_tensors_to_one_file=True,
        external_data_location=prepared.name + ".data",
    )
    try:
        quant_pre_process(str(staged), str(prepared), **options)
        symbolic = True
    except Exception:  # symbolic shape inference rejects some graphs; plain ONNX shape inference still works
        try:
            quant_pre_process(str(staged), str(prepared), skip_symbolic_shape=True, **options)
            symbolic = False
        except Exception as exc:
            raise PassError(pass_name, f"graph preparation failed: {str(exc).splitlines()[0]}") from None
    if any(not n.name for n in load_onnx(prepared, load_external_data=False).graph.node):
        model = load_onnx(prepared)  # the optimizer may add unnamed nodes
        named += name_unnamed_nodes(model)
        save_onnx(model, prepared)
    return prepared, {
        "constants_to_initializers": moved,
        "nodes_named": named,
        "symbolic_shape_inference": int(symbolic),
    }


def name_unnamed_nodes(model) -> int:
    """Give every node a unique name: exclusions, fallback and the per-layer report refer to nodes by name."""
    taken = {n.name for n in model.graph.node if n.name}
    named = 0
    for index, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        named += 1
    return named
