"""How much of an OpenVINO IR's compute runs in INT8: `model.graph_stats.int8_compute_share` for a result served
from an IR that is not the ONNX file beside it (NNCF's quantization ships the float model.onnx and its own IR).

A convolution or MatMul counts as INT8 when both its data and its weights arrive quantized: through a
FakeQuantize, or from an integer constant (NNCF stores INT8 weights as i8 + Convert + Multiply), looking back
through the ops OpenVINO's low-precision transformations carry quantization across (pooling, reshapes, the
dequantizing Multiply/Subtract by a constant). Dynamic dimensions count as 1, as in the ONNX statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelforge.model.graph_stats import share_record

COMPUTE_OPS = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"}
TRANSPARENT_OPS = {"MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Convert"}
DEQUANTIZING_OPS = {"Multiply", "Subtract"}  # by a constant: a scale or zero point
INTEGER_TYPES = {"i8", "u8", "i4", "u4"}


def _static(shape) -> list[int]:
    return [d.get_length() if d.is_static else 1 for d in shape] if shape.rank.is_static else []


def _arrives_quantized(output) -> bool:
    node = output.get_node()
    for _ in range(16):  # a chain of carriers is short; a cycle-free graph ends well before
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant":
            return node.get_output_element_type(0).get_type_name() in INTEGER_TYPES
        constant_operand = node.get_input_size() == 2 and node.input_value(1).get_node().get_type_name() == "Constant"
        if kind not in TRANSPARENT_OPS and not (kind in DEQUANTIZING_OPS and constant_operand):
            return False
        node = node.input_value(0).get_node()
    return False


def _macs(op) -> int:
    kind = op.get_type_name()
    out = _static(op.get_output_partial_shape(0))
    data = _static(op.get_input_partial_shape(0))
    weight = _static(op.get_input_partial_shape(1))
    if not out or not weight:
        return 0
    if kind == "Convolution":
        return int(np.prod(out)) * int(np.prod(weight[1:]))
    if kind == "GroupConvolution":  # weight [groups, out/groups, in/groups, k...]
        return int(np.prod(out)) * int(np.prod(weight[2:]))
    if kind == "ConvolutionBackpropData":
        return int(np.prod(data)) * int(np.prod(weight[1:])) if data else 0
    transpose_a = op.get_attributes().get("transpose_a", False)
    k = data[-2] if transpose_a and len(data) > 1 else (data[-1] if data else 0)
    return int(np.prod(out)) * int(k)


def ir_int8_compute_share(xml: Path) -> dict[str, Any]:
    """The keys of `int8_compute_share`; `nodes` counts the IR's compute ops (its other ops have no ONNX twin)."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    total_macs = int8_macs = nodes = int8_nodes = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() not in COMPUTE_OPS:
            continue
        quantized = all(_arrives_quantized(op.input_value(i)) for i in range(2))
        macs = _macs(op)
        nodes += 1
        int8_nodes += quantized
        total_macs += macs
        int8_macs += macs if quantized else 0
    return share_record(total_macs, int8_macs, nodes, int8_nodes) | {"counted_on": "openvino IR, compute ops"}
