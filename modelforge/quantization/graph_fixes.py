"""Make graphs as exporters write them quantizable: the fixes each cover a class of real-world models.

- Opset below 13 (PaddlePaddle's and older torch exporters write 11/12): per-channel `DequantizeLinear`
  needs the `axis` attribute, which only exists from opset 13 on; onnxruntime refuses such a model
  (`Unrecognized attribute: axis for operator DequantizeLinear`). The graph is converted to opset 13 first.
- Row-vector biases: dense layers exported as `MatMul` + `Add(bias of shape [1, N])` (tf2onnx, jax2tf) are
  fused by onnxruntime's optimizer into a `Gemm` whose C is [1, N]; onnxruntime's int32-bias scale
  adjustment indexes it per channel and raises ("truth value of an array ... is ambiguous"). A bias with
  one non-unit dimension is the same tensor as its 1-D form, which every quantizer handles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

# Per-channel DequantizeLinear (the `axis` attribute) exists from this opset on.
MIN_QUANTIZATION_OPSET = 13


def upgrade_opset(model: onnx.ModelProto, minimum: int = MIN_QUANTIZATION_OPSET) -> tuple[int, int] | None:
    """Convert a model below `minimum` to it in place; returns (from, to), or None when nothing changed.

    Raises the converter's error when a node has no conversion (the caller decides what to do then)."""
    import onnx
    from onnx import version_converter

    from modelforge.onnx_model import opset_version

    before = opset_version(model)
    if before >= minimum or before == 0:
        return None
    converted = version_converter.convert_version(model, minimum)
    # The converter leaves the declared ir_version as it was; opset 13 needs IR 7 or later.
    converted.ir_version = max(converted.ir_version, 7)
    onnx.checker.check_model(converted)
    model.CopyFrom(converted)
    return before, minimum


def flatten_row_biases(model: onnx.ModelProto) -> int:
    """Give each `Gemm` bias of shape [1, N] its 1-D form [N] (the same broadcast over the [M, N] output).

    Only initializers whose element count equals the Gemm's output width are rewritten (so broadcasting is
    unchanged); a bias shared with other nodes is copied first. Returns how many biases were flattened."""
    import onnx

    inits = {t.name: t for t in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    flattened = 0
    for node in model.graph.node:
        if node.op_type != "Gemm" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        bias = inits[node.input[2]]
        dims = list(bias.dims)
        if len(dims) <= 1 or any(d != 1 for d in dims[:-1]):  # [1, N] broadcasts like [N]; [N, 1] does not
            continue
        width = _gemm_output_width(node, inits)
        count = 1
        for d in dims:
            count *= d
        if width is None or count != width:
            continue
        if readers.get(bias.name, 0) > 1:
            copy = onnx.TensorProto()
            copy.CopyFrom(bias)
            copy.name = f"{bias.name}_{node.name or 'gemm'}_1d"
            model.graph.initializer.append(copy)
            readers[bias.name] -= 1
            node.input[2] = copy.name
            bias = copy
        del bias.dims[:]
        bias.dims.append(count)
        flattened += 1
    return flattened


def _gemm_output_width(node, inits) -> int | None:
    """N of a Gemm's [M, N] output, from its constant B (transposed or not)."""
    if node.input[1] not in inits:
        return None
    dims = list(inits[node.input[1]].dims)
    if len(dims) != 2:
        return None
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return dims[0] if trans_b else dims[1]
