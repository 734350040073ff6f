"""Make graphs as exporters write them quantizable: the fixes each cover a class of real-world models.

- Opset below 13 (PaddlePaddle's and older torch exporters write 11/12): per-channel `DequantizeLinear`
  needs the `axis` attribute, which only exists from opset 13 on; onnxruntime refuses such a model
  (`Unrecognized attribute: axis for operator DequantizeLinear`). The graph is converted to opset 13 first.
- Row-vector biases: dense layers exported as `MatMul` + `Add(bias of shape [1, N])` (tf2onnx, jax2tf) are
  fused by onnxruntime's optimizer into a `Gemm` whose C is [1, N]; onnxruntime's int32-bias scale
  adjustment indexes it per channel and raises ("truth value of an array ... is ambiguous"). A bias with
  one non-unit dimension is the same tensor as its 1-D form, which every quantizer handles.
- Dense layers written as `Einsum` (jax2tf: "bij,jk->bik", "...d,df->...f"): onnxruntime's quantizers have
  no Einsum (static, dynamic and integer registries alike, onnxruntime 1.32), so such a layer would stay
  float whatever the scheme. A two-operand Einsum that contracts the last axis of its input with the first
  (or second, transposed) axis of a constant 2-D weight and keeps the other axes in order is a MatMul; it is
  rewritten as one (the weight transposed once, as a new initializer, when needed).
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

    from modelforge.model.onnx_model import opset_version

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
    readers = _reader_counts(model)
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


def _reader_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many node inputs read each tensor (a shared initializer is copied before it is rewritten)."""
    from collections import Counter

    return dict(Counter(name for node in model.graph.node for name in node.input))


def _gemm_output_width(node, inits) -> int | None:
    """N of a Gemm's [M, N] output, from its constant B (transposed or not)."""
    if node.input[1] not in inits:
        return None
    dims = list(inits[node.input[1]].dims)
    if len(dims) != 2:
        return None
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return dims[0] if trans_b else dims[1]


def einsum_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite each dense-layer `Einsum` (data, constant 2-D weight) as a `MatMul`; returns how many.

    Equations handled: "<prefix>j,jk-><prefix>k" and "<prefix>j,kj-><prefix>k" with either operand first,
    where <prefix> is any run of letters and/or an ellipsis (MatMul broadcasts the leading axes the same
    way). Any other Einsum is left as it is (and stays float)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    readers = _reader_counts(model)
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "Einsum" or len(node.input) != 2:
            continue
        equation = next((a.s.decode() for a in node.attribute if a.name == "equation"), "")
        plan = _dense_einsum(equation.replace(" ", ""), [name in inits for name in node.input])
        if plan is None:
            continue
        data_index, transpose = plan
        data, weight = node.input[data_index], node.input[1 - data_index]
        if len(inits[weight].dims) != 2:
            continue
        if transpose:
            array = numpy_helper.to_array(inits[weight]).T.copy()
            name = f"{weight}_transposed_for_{node.name or 'einsum'}"
            model.graph.initializer.append(numpy_helper.from_array(array, name))
            weight = name
        del node.input[:]
        node.input.extend([data, weight])
        del node.attribute[:]
        node.op_type = "MatMul"
        node.domain = ""
        rewritten += 1
    if rewritten:  # a weight that was only read transposed is dropped
        used = {name for node in model.graph.node for name in node.input}
        keep = [t for t in model.graph.initializer if t.name in used or readers.get(t.name, 0) == 0]
        if len(keep) != len(model.graph.initializer):
            del model.graph.initializer[:]
            model.graph.initializer.extend(keep)
    return rewritten


def _dense_einsum(equation: str, constant: list[bool]) -> tuple[int, bool] | None:
    """(index of the data operand, whether the weight must be transposed) when `equation` is a MatMul of
    data by a constant 2-D weight, else None."""
    if "->" not in equation or equation.count(",") != 1:
        return None
    inputs, output = equation.split("->")
    terms = inputs.split(",")
    for data_index in (0, 1):
        if not constant[1 - data_index] or constant[data_index]:
            continue
        data, weight = terms[data_index], terms[1 - data_index]
        if len(weight) != 2 or "." in weight or weight[0] == weight[1] or not data or data[-1] == ".":
            continue
        contracted = data[-1]
        prefix = data[:-1]
        if contracted not in weight or contracted in prefix or contracted in output:
            continue
        kept = weight[1] if weight[0] == contracted else weight[0]
        if kept in data or output != prefix + kept or len(set(prefix.replace(".", ""))) != len(prefix.replace(".", "")):
            continue
        return data_index, weight[1] == contracted
    return None
