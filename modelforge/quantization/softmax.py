"""Floor the attention Softmax inputs: the same probabilities, without onnxruntime's slow path on masked scores.

A padding mask adds a large negative bias (-10000, or the float minimum) to the scores of masked keys. The
exponentials of those scores underflow, and onnxruntime's CPU Softmax (MLAS) runs 5-30x slower on such rows
than on rows of ordinary values: the exponentials it produces, and the probabilities it scales them to,
are denormal or at the edge of it, the CPU's slow path (measured: a [8, 12, 128, 128] Softmax with real
MiniLM padding took 6.9 ms, the same scores floored 1.35 ms). That made the float Softmax a third of a
dynamically quantized MiniLM's run time.

The rewrite, before each Softmax that feeds the attention product (scores @ values):

    floored = Max(scores, ReduceMax(scores, axis) - margin)      Softmax(floored)

A score more than `margin` below its row's maximum gets probability exp(-margin) relative to the largest one
instead of less. With margin 60 that is 8.8e-27: a row's sum moves by at most (n - 1) * 8.8e-27 relative,
far below float32's resolution (6e-8), so the probabilities of kept keys are unchanged and masked keys keep
a weight no product can see. All values stay normal floats, so Softmax and the product that follows take
their fast path. Rows whose maximum is -inf (fully masked with -inf) are left as they were.

Only float32 Softmax nodes whose output is not a graph output and reaches a MatMul/Einsum within a few
steps are changed: a model that outputs probabilities keeps its exact tail values.
"""

from __future__ import annotations

import numpy as np

SOFTMAX_FLOOR_MARGIN = 60.0
_FOLLOWERS = {"MatMul", "Einsum", "FusedMatMul"}
_PASS_THROUGH = {"Cast", "Dropout", "Identity", "Where", "Reshape", "Transpose", "Squeeze", "Unsqueeze"}


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _elem_types(model) -> dict[str, int]:
    types = {}
    for info in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    for tensor in model.graph.initializer:
        types[tensor.name] = tensor.data_type
    return types


def _ranks(model) -> dict[str, int]:
    return {
        info.name: len(info.type.tensor_type.shape.dim)
        for info in (*model.graph.input, *model.graph.value_info, *model.graph.output)
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape")
    }


def _feeds_attention_product(node, consumers: dict[str, list], outputs: set[str]) -> bool:
    """The Softmax output reaches a MatMul/Einsum through at most a few pass-through ops, and no graph output."""
    frontier, steps = [node], 0
    found = False
    while frontier and steps < 4:
        nxt = []
        for n in frontier:
            for out in n.output:
                if out in outputs:
                    return False
                for consumer in consumers.get(out, []):
                    if consumer.op_type in _FOLLOWERS:
                        found = True
                    elif consumer.op_type in _PASS_THROUGH:
                        nxt.append(consumer)
        frontier, steps = nxt, steps + 1
    return found


def _axis(node, opset: int, rank: int | None) -> int | None:
    """The Softmax axis as ReduceMax needs it, or None when the rewrite would not be exact (before opset 13
    Softmax normalises over all dims from `axis` on: only the last-dim case is the same)."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1 if opset >= 13 else 1)
    if opset >= 13:
        return axis
    if axis == -1 or (rank is not None and axis == rank - 1):
        return -1
    return None


def floor_attention_softmax(model, margin: float = SOFTMAX_FLOOR_MARGIN) -> list[str]:
    """Insert the floor before every attention Softmax of `model` (edited in place); returns their names.

    Node and tensor names derive from the Softmax's own name, so the result is deterministic; the Softmax
    itself keeps its name, and no other node changes.
    """
    from onnx import TensorProto, helper, numpy_helper

    opset = _opset(model)
    if opset < 1:
        return []
    graph = model.graph
    types = _elem_types(model)
    ranks = _ranks(model)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    taken = {n.name for n in graph.node} | {t for n in graph.node for t in (*n.input, *n.output)}
    taken |= {t.name for t in graph.initializer} | {i.name for i in graph.input}

    def unique(name: str) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    margin_name = None
    axes_names: dict[int, str] = {}
    changed: list[str] = []
    nodes = []
    for node in graph.node:
        axis = None
        if node.op_type == "Softmax" and node.domain in ("", "ai.onnx") and node.input:
            source = node.input[0]
            if types.get(source) == TensorProto.FLOAT and _feeds_attention_product(node, consumers, outputs):
                axis = _axis(node, opset, ranks.get(source))
        if axis is None:
            nodes.append(node)
            continue
        if margin_name is None:
            margin_name = unique("softmax_floor_margin")
            graph.initializer.append(numpy_helper.from_array(np.array(margin, dtype=np.float32), margin_name))
        base = node.name or f"Softmax_{len(changed)}"
        row_max, floor, floored = (unique(f"{base}/{what}") for what in ("row_max", "floor", "floored"))
        if opset >= 18:
            if axis not in axes_names:
                axes_names[axis] = unique(f"softmax_floor_axes_{axis}")
                graph.initializer.append(numpy_helper.from_array(np.array([axis], dtype=np.int64), axes_names[axis]))
            reduce = helper.make_node("ReduceMax", [source, axes_names[axis]], [row_max], name=row_max, keepdims=1)
        else:
            reduce = helper.make_node("ReduceMax", [source], [row_max], name=row_max, axes=[axis], keepdims=1)
        nodes += [
            reduce,
            helper.make_node("Sub", [row_max, margin_name], [floor], name=floor),
            helper.make_node("Max", [source, floor], [floored], name=floored),
        ]
        node.input[0] = floored
        nodes.append(node)
        changed.append(node.name)
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed
