"""Static statistics of an ONNX graph: multiply-accumulates per node and how much of them run in INT8.

"INT8 model slower than FP32" is often "only a third of the compute became INT8": the report states
the share of MACs that runs in INT8 (compute nodes whose inputs all arrive through DequantizeLinear, which
onnxruntime fuses into integer kernels, and integer kernels themselves: MatMulInteger of dynamic
quantization, QLinearConv, MatMulNBits, ...), and the share of nodes (Q/DQ aside) that run on quantized
inputs. Symbolic dimensions count as 1, so shares are exact for the batch dimension and approximate where
sequence lengths enter quadratically (attention scores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Integer kernels: they run in INT8 whatever feeds them. -> index of the weight (Conv-like) or B (MatMul-like) input.
INTEGER_OPS = {
    "ConvInteger": 1,
    "QLinearConv": 3,
    "MatMulInteger": 1,
    "QLinearMatMul": 3,
    "DynamicQuantizeMatMul": 1,
    "MatMulNBits": 1,
}
COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", *INTEGER_OPS}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def _shapes(model) -> dict[str, list[int]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference cannot follow still has the shapes it declared
        inferred = model
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def node_macs(node, shapes: dict[str, list[int]]) -> int:
    """Multiply-accumulates of one compute node (0 when shapes are unknown)."""
    out = shapes.get(node.output[0]) if node.output else None
    if node.op_type == "MatMulNBits":  # 4-bit weights, shape given by attributes K and N
        a = shapes.get(node.input[0])
        sizes = {attr.name: attr.i for attr in node.attribute if attr.name in ("K", "N")}
        return int(np.prod(a[:-1])) * sizes.get("K", 0) * sizes.get("N", 0) if a else 0
    if node.op_type in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
        weight = shapes.get(node.input[INTEGER_OPS.get(node.op_type, 1)])
        if not out or not weight:
            return 0
        # Conv weight [M, C/group, kH, kW]: every output element needs C/group*kH*kW MACs.
        per_output = int(np.prod(weight[1:]))
        if node.op_type == "ConvTranspose":
            inp = shapes.get(node.input[0])
            return int(np.prod(inp)) * int(np.prod(weight[1:])) if inp else 0
        return int(np.prod(out)) * per_output
    if node.op_type in ("MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul"):
        a = shapes.get(node.input[0])
        if not a:
            return 0
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
        k = a[-2] if (node.op_type == "Gemm" and trans_a) else a[-1]
        if not out:  # contrib ops: no shape inference; [.., M, K] x [K, N]
            b = shapes.get(node.input[INTEGER_OPS.get(node.op_type, 1)])
            return int(np.prod(a[:-1])) * int(k) * int(b[-1]) if b else 0
        return int(np.prod(out)) * int(k)
    return 0


def int8_compute_share(model) -> dict[str, Any]:
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    initializers = {t.name for t in model.graph.initializer}
    shapes = _shapes(model)
    total_macs = int8_macs = 0
    nodes = int8_nodes = 0
    for node in model.graph.node:
        if node.op_type in QDQ_OPS or node.op_type == "Constant":
            continue
        data_inputs = [i for i in node.input if i]
        quantized = node.op_type in INTEGER_OPS or (
            bool(data_inputs)
            and all(
                producers.get(i) == "DequantizeLinear" or (i in initializers and node.op_type not in COMPUTE_OPS)
                for i in data_inputs[:2]
            )
        )
        nodes += 1
        int8_nodes += quantized
        if node.op_type in COMPUTE_OPS:
            macs = node_macs(node, shapes)
            total_macs += macs
            int8_macs += macs if quantized else 0
    return share_record(total_macs, int8_macs, nodes, int8_nodes)


def share_record(macs: int, int8_macs: int, nodes: int, int8_nodes: int) -> dict[str, Any]:
    """The report's `compute` record (also counted on OpenVINO IR: `runtimes.openvino_stats`)."""
    return {
        "macs": macs,
        "int8_macs": int8_macs,
        "int8_mac_share": int8_macs / macs if macs else None,
        "nodes": nodes,
        "int8_nodes": int8_nodes,
        "int8_node_share": int8_nodes / nodes if nodes else None,
    }
