"""Prepare a float ONNX model for quantization: weights as initializers, fused and shape-inferred.

Calibration and quantization must see the same graph that will run: folding BatchNorm into Conv and
fusing first means one QDQ pair per fused op instead of one per original op (fewer requantizations).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.errors import PassError, first_line
from modelforge.model.onnx_model import constants_to_initializers, load_onnx, save_onnx

if TYPE_CHECKING:
    import onnx


def prepare_for_quantization(
    source: Path, workdir: Path, pass_name: str, handover: list[onnx.ModelProto] | None = None
) -> tuple[Path, dict[str, Any], onnx.ModelProto]:
    """Returns the prepared model's path, what was done (for the stage record), and the prepared model as
    read back (its graph; its weights too unless they are in an external data file).

    `handover`: the source model already read with its weights, in a list this function empties (and then
    edits the model), so the caller holds no reference while onnxruntime prepares the graph; else it is read."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from modelforge.quantization.graph_fixes import einsum_to_matmul, flatten_row_biases, upgrade_opset
    from modelforge.quantization.state import self_contained

    model = handover.pop() if handover else load_onnx(source)
    moved = constants_to_initializers(model)
    fixes: dict[str, Any] = {}
    try:
        upgraded = upgrade_opset(model)
        if upgraded:
            fixes["opset_upgraded"] = f"{upgraded[0]} -> {upgraded[1]} (per-channel weights need opset 13)"
    except Exception as exc:  # no conversion for some node: quantized per-tensor at the old opset instead
        fixes["opset_upgrade_failed"] = first_line(exc)
    einsums = einsum_to_matmul(model)  # onnxruntime quantizes no Einsum: dense ones become MatMul
    if einsums:
        fixes["einsum_to_matmul"] = einsums
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
        with scratch_cwd(workdir):
            quant_pre_process(str(staged.resolve()), str(prepared.resolve()), **options)
        symbolic = True
    except Exception:  # symbolic shape inference rejects some graphs; plain ONNX shape inference still works
        try:
            with scratch_cwd(workdir):
                quant_pre_process(str(staged.resolve()), str(prepared.resolve()), skip_symbolic_shape=True, **options)
            symbolic = False
        except Exception as exc:
            raise PassError(pass_name, f"graph preparation failed: {first_line(exc)}") from exc
    skeleton = load_onnx(prepared, load_external_data=False)
    if any(not n.name for n in skeleton.graph.node) or _has_row_bias(skeleton):
        # The optimizer may add unnamed nodes, and fuse MatMul + Add into Gemm. A self-contained file read
        # without external data is already the whole model.
        model = skeleton if self_contained(skeleton) else load_onnx(prepared)
        named += name_unnamed_nodes(model)
        flattened = flatten_row_biases(model)
        if flattened:
            fixes["row_biases_flattened"] = flattened
        save_onnx(model, prepared)
        skeleton = model  # as saved (a large model's weights went to the data file)
    return (
        prepared,
        {
            "constants_to_initializers": moved,
            "nodes_named": named,
            "symbolic_shape_inference": int(symbolic),
            **fixes,
        },
        skeleton,
    )


@contextlib.contextmanager
def scratch_cwd(workdir: Path) -> Iterator[None]:
    """Run with the current directory set to a private scratch folder inside the stage's workdir.

    When onnxruntime's symbolic shape inference cannot infer every shape, it saves the partial model as
    `sym_shape_infer_temp.onnx` plus a `<uuid>.data` file into the *current directory* before raising, and
    has no option to put them elsewhere (onnxruntime/tools/symbolic_shape_infer.py, `infer_shapes`). Here
    they land in the workdir, which is deleted with the run; the user's folder is never written and may be
    read-only. Callers pass absolute paths.

    onnxruntime's pre-processing also logs a full traceback at ERROR when its optimizer step fails, then
    carries on without it: muted here, since passes never print (a real failure still raises).
    """
    scratch = Path(tempfile.mkdtemp(prefix="cwd-", dir=workdir.resolve()))
    ort_logger = logging.getLogger("onnxruntime")
    level = ort_logger.level
    ort_logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.chdir(scratch):
            yield
    finally:
        ort_logger.setLevel(level)
        shutil.rmtree(scratch, ignore_errors=True)


def _has_row_bias(model) -> bool:
    """A Gemm whose constant bias has more than one dimension (a [1, N] row: see graph_fixes)."""
    shapes = {t.name: len(t.dims) for t in model.graph.initializer}
    return any(n.op_type == "Gemm" and len(n.input) > 2 and shapes.get(n.input[2], 0) > 1 for n in model.graph.node)


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
