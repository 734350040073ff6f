"""Keep a run alive when onnxruntime's quantizer fails on some node: find the node, retry it, or leave it out.

onnxruntime's quantizer raises bare Python errors on graph shapes it does not expect (a bias of an odd rank, a
weight it cannot index per channel, ...). One such node must not cost the user the whole model. The failing
node is named by the quantizer's own stack (its op quantizers hold `self.node`) or, when the error comes
from a whole-graph step, found by bisection over the nodes to quantize (the smallest prefix of the graph's
quantizable nodes whose quantization fails ends with the culprit). The culprit is retried with per-tensor
weights (the other weights stay per-channel, through onnxruntime's per-tensor axis overrides), and kept in
float if that fails too. Every isolated node is reported with the quantizer's error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelforge.errors import first_line

# Beyond this many failing nodes the graph is not "mostly quantizable": the run fails with the error.
MAX_ISOLATED = 16
QUANT_SUFFIX = "_quantized"  # onnxruntime's name for a quantized initializer

Attempt = Callable[[list[str] | None, list[str], dict[str, int] | None], Any]


def failing_node(exc: BaseException) -> tuple[str, str] | None:
    """The ONNX node an onnxruntime quantizer was working on when it raised (its op quantizers keep it
    as `self.node`), so the error can name the node and op type instead of showing a stack trace."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        node = getattr(tb.tb_frame.f_locals.get("self"), "node", None)
        if node is not None and hasattr(node, "op_type"):
            found = (node.name or "(unnamed)", node.op_type)
        tb = tb.tb_next
    return found


def quantize_isolating(
    attempt: Attempt, model, op_types: list[str], exclude: list[str], *, per_channel: bool
) -> tuple[Any, list[dict[str, str]]]:
    """Run `attempt(nodes_to_quantize, exclude_nodes, axes)` until it succeeds; returns its model and the
    isolated nodes' records. Raises the quantizer's error when no culprit can be found or too many nodes fail."""
    records: dict[str, dict[str, str]] = {}  # node -> {node, op_type, action, error}
    in_float: list[str] = []
    per_tensor: list[str] = []
    pending: list[str] = []  # excluded for now; retried per-tensor once a model has been written
    axes: dict[str, int] | None = None
    while True:
        excluded = [*exclude, *in_float, *pending]
        try:
            result = attempt(None, excluded, axes if per_tensor else None)
        except Exception as exc:
            culprit = failing_node(exc) or _bisect(attempt, model, op_types, excluded, axes if per_tensor else None)
            if culprit is None or culprit[0] in in_float or len(records) >= MAX_ISOLATED:
                raise
            name, op_type = culprit
            record = records.setdefault(name, {"node": name, "op_type": op_type, "error": first_line(exc)})
            if name in per_tensor:
                per_tensor.remove(name)
                in_float.append(name)
                record["action"] = "kept in float (per-tensor weights failed too)"
            elif per_channel and _has_weight(model, name):
                pending.append(name)
            else:
                in_float.append(name)
                record["action"] = "kept in float"
            continue
        if pending:
            axes = {**(axes or {}), **weight_axes(result)}
            per_tensor.extend(pending)
            for name in pending:
                records[name]["action"] = "per-tensor weights (per-channel failed)"
            pending = []
            continue
        return result, list(records.values())


def _bisect(attempt: Attempt, model, op_types: list[str], excluded: list[str], axes) -> tuple[str, str] | None:
    """The node ending the shortest failing prefix of the quantizable nodes (graph order), or None."""
    skip = set(excluded)
    candidates = [(n.name, n.op_type) for n in model.graph.node if n.op_type in op_types and n.name not in skip]
    if not candidates:
        return None

    def fails(count: int) -> bool:
        try:
            attempt([name for name, _ in candidates[:count]], excluded, axes)
        except Exception:
            return True
        return False

    low, high = 0, len(candidates)  # quantizing the first `low` works; the first `high` fails (all: known)
    if not fails(high):
        return None  # only the whole graph fails: no single culprit
    while high - low > 1:
        middle = (low + high) // 2
        if fails(middle):
            high = middle
        else:
            low = middle
    return candidates[high - 1]


def weight_axes(quantized) -> dict[str, int]:
    """Per-channel axis of each 8-bit weight in a QDQ model, keyed by the float weight's name."""
    import onnx

    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    inits = {t.name: t.data_type for t in quantized.graph.initializer}
    axes = {}
    for node in quantized.graph.node:
        if node.op_type != "DequantizeLinear" or inits.get(node.input[0]) not in eight_bit:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        if axis is not None and node.input[0].endswith(QUANT_SUFFIX):
            axes[node.input[0][: -len(QUANT_SUFFIX)]] = axis
    return axes


def _has_weight(model, name: str) -> bool:
    inits = {t.name for t in model.graph.initializer}
    node = next((n for n in model.graph.node if n.name == name), None)
    return node is not None and any(i in inits for i in node.input[1:2])
