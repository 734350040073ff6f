"""What kind of model is this? Convolutional, transformer encoder, recurrent, plain MLP, or a mix.

The answer picks the quantization scheme (see `schemes.py`): static INT8 on every op suits CNNs; on a
transformer it ruins accuracy (LayerNorm, Softmax, GELU and residual adds do not survive 8-bit activations),
so only the MatMul/Gemm weights are quantized there.

LayerNorms count whether fused (`LayerNormalization`) or written out by a converter (`decomposed_norms`:
matched by dataflow, any node order, with or without the affine scale and shift; RMSNorm too). A dense layer
is a MatMul/Gemm with a constant weight, or a two-operand `Einsum` with one (jax2tf writes dense layers so).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Family = Literal["convolutional", "transformer", "recurrent", "conv-recurrent", "mlp", "mixed", "other"]

CONV_OPS = {"Conv", "ConvTranspose"}
DENSE_OPS = {"MatMul", "Gemm"}
RECURRENT_OPS = {"LSTM", "GRU", "RNN"}
NORM_OPS = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization"}
FUSED_ATTENTION_OPS = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"}


@dataclass(frozen=True)
class ModelFamily:
    family: Family
    reason: str
    counts: dict[str, int] = field(default_factory=dict)


def _consumers(model) -> dict[str, list]:
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _attention_blocks(model) -> int:
    """Softmax nodes whose output reaches a MatMul within a few steps: scores @ values."""
    consumers = _consumers(model)
    blocks = 0
    for node in model.graph.node:
        if node.op_type != "Softmax":
            continue
        frontier, seen = [node], 0
        found = False
        while frontier and seen < 6 and not found:
            nxt = []
            for n in frontier:
                for out in n.output:
                    for c in consumers.get(out, []):
                        if c.op_type in DENSE_OPS or c.op_type == "Einsum":
                            found = True
                        nxt.append(c)
            frontier, seen = nxt, seen + 1
        blocks += found
    return blocks


# ------------------------------------------------------------------------------ decomposed normalisations

# Ops a decomposed LayerNorm/RMSNorm is written with besides its reductions (tf2onnx's Square is Mul x*x,
# Maximum is Max, Rsqrt is Sqrt + Reciprocal; other converters use Pow, Div or 1/Sqrt).
_NORM_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Sqrt", "Reciprocal", "Rsqrt", "Pow", "Max", "Relu", "Clip", "Neg"}
_AFFINE_OPS = {"Mul", "Add", "Sub", "Div"}  # scale and shift after the normalised tensor
_MAX_AFFINE = 2  # Mul(gamma) then Add(beta): no more than that is taken from the following graph
_REDUCE_OPS = {"ReduceMean", "ReduceSum"}
# Ops that only reshape or broadcast their first input (tf2onnx broadcasts a statistic with Reshape + Expand
# to a shape computed from Shape(x)): a statistic stays a statistic through them.
_LAYOUT_OPS = {"Reshape", "Expand", "Unsqueeze", "Squeeze", "Identity"}
# Ops whose output depends only on their inputs' shapes, not on the data; and ops that draw random numbers.
_SHAPE_OPS = {"Shape", "Size"}
_RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


@dataclass(frozen=True)
class NormMatch:
    """One decomposed normalisation: `kind` layernorm or rmsnorm, the tensor it normalises, its nodes."""

    kind: Literal["layernorm", "rmsnorm"]
    input: str
    nodes: tuple[str, ...]


class _Graph:
    """Producers, consumers and constant values of a graph, for matching by dataflow (not node order)."""

    def __init__(self, model) -> None:
        import numpy as np
        from onnx import numpy_helper

        self.nodes = list(model.graph.node)
        # Nodes are keyed by id(): every map holds the wrappers of this one list, so the ids are stable.
        self.producer = {}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for out in n.output:
                self.producer[out] = n
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.values = {t.name: t for t in model.graph.initializer}
        for n in self.nodes:
            if n.op_type == "Constant" and n.attribute:
                attr = n.attribute[0]
                if attr.name == "value":
                    self.values[n.output[0]] = attr.t
                elif attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                    value = {"value_float": attr.f, "value_floats": list(attr.floats), "value_int": attr.i}
                    self.values[n.output[0]] = numpy_helper.from_array(
                        np.asarray(value.get(attr.name, list(attr.ints)))
                    )
        self._to_array = numpy_helper.to_array
        self.static = self._static_tensors()

    def _static_tensors(self) -> set[str]:
        """Tensors whose values do not depend on the input data: constants, shapes, and what is computed
        from them alone (a converter's shape arithmetic, a reshaped gamma). Found by fixpoint, any order."""
        static = set(self.values)
        changed = True
        while changed:
            changed = False
            for n in self.nodes:
                if n.output[0] in static or n.op_type in _RANDOM_OPS:
                    continue
                inputs = [i for i in n.input if i]
                if n.op_type in _SHAPE_OPS or (inputs and all(i in static for i in inputs)):
                    static.update(n.output)
                    changed = True
        return static

    def constant(self, name: str):
        tensor = self.values.get(name)
        return None if tensor is None else self._to_array(tensor)

    def is_constant(self, name: str) -> bool:
        """Known without the input data (a constant, or computed from constants and shapes)."""
        return name in self.static

    def is_layout(self, node) -> bool:
        """A reshape or broadcast of its first input to a shape known without the data."""
        return node.op_type in _LAYOUT_OPS and all(self.is_constant(i) for i in node.input[1:] if i)

    def through_layout(self, tensor: str) -> tuple[str, list]:
        """(source, nodes): the tensor that `tensor` reshapes or broadcasts, with the layout ops between."""
        passed: list = []
        node = self.producer.get(tensor)
        while node is not None and self.is_layout(node):
            passed.append(node)
            tensor = node.input[0]
            node = self.producer.get(tensor)
        return tensor, passed

    def axes(self, node) -> tuple | None:
        """The reduction axes (attribute before opset 18 / ReduceSum 13, input after), None for all."""
        for a in node.attribute:
            if a.name == "axes":
                return tuple(a.ints)
        if len(node.input) > 1 and node.input[1]:
            value = self.constant(node.input[1])
            return None if value is None else tuple(int(v) for v in value.reshape(-1))
        return None


def _square_input(g: _Graph, node) -> str | None:
    """x for Mul(x, x) or Pow(x, 2), else None."""
    if node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]:
        return node.input[0]
    if node.op_type == "Pow" and len(node.input) == 2:
        exponent = g.constant(node.input[1])
        if exponent is not None and exponent.size == 1 and float(exponent.reshape(-1)[0]) == 2.0:
            return node.input[0]
    return None


def _mean_of(g: _Graph, tensor: str) -> tuple[str, tuple | None, list] | None:
    """(x, axes, nodes) when `tensor` is a mean of x: ReduceMean(x), or ReduceSum(x) scaled by a constant,
    possibly reshaped or broadcast afterwards."""
    tensor, layout = g.through_layout(tensor)
    node = g.producer.get(tensor)
    if node is None:
        return None
    if node.op_type == "ReduceMean":
        return node.input[0], g.axes(node), [node, *layout]
    if node.op_type in ("Div", "Mul") and len(node.input) == 2 and g.is_constant(node.input[1]):
        inner = g.producer.get(node.input[0])
        if inner is not None and inner.op_type == "ReduceSum":
            return inner.input[0], g.axes(inner), [inner, node, *layout]
    return None


def _centred(g: _Graph, tensor: str) -> tuple[str, list] | None:
    """(x, nodes) when `tensor` is Sub(x, mean(x))."""
    node = g.producer.get(tensor)
    if node is None or node.op_type != "Sub":
        return None
    mean = _mean_of(g, node.input[1])
    if mean is None or mean[0] != node.input[0]:
        return None
    return node.input[0], [node, *mean[2]]


def _match_from_square(g: _Graph, square) -> NormMatch | None:
    """The normalisation whose mean of squares starts at `square`, grown by dataflow; None if it is none."""
    a = _square_input(g, square)
    if a is None:
        return None
    centred = _centred(g, a)
    x = centred[0] if centred else a
    # The mean of the squares: ReduceMean(sq), or ReduceSum(sq) / n.
    reduce_node = next((c for c in g.consumers.get(square.output[0], []) if c.op_type in _REDUCE_OPS), None)
    if reduce_node is None:
        return None
    axes = g.axes(reduce_node)
    core = {id(n): n for n in [square, reduce_node, *(centred[1] if centred else [])]}
    # Every mean of x over the same axes is part of it (E[x] of the E[x^2] - E[x]^2 form, x - E[x]).
    for c in g.consumers.get(x, []):
        if c.op_type in _REDUCE_OPS and g.axes(c) == axes:
            core[id(c)] = c
    kind: dict[str, str] = {x: "data"}  # tensor -> "stat" (reduced) or "data" (x's shape); "norm": normalised
    for n in core.values():
        for out in n.output:
            kind[out] = "stat" if n.op_type in _REDUCE_OPS else "data"
    depth: dict[str, int] = {}  # normalised tensor -> affine steps after the normalisation
    changed = True
    while changed:
        changed = False
        for tensor in list(kind):
            for c in g.consumers.get(tensor, []):
                if id(c) in core:
                    continue
                if c.op_type in _LAYOUT_OPS:  # a statistic reshaped or broadcast is still a statistic
                    if c.input[0] == tensor and kind[tensor] == "stat" and g.is_layout(c):
                        core[id(c)] = c
                        kind.update((out, "stat") for out in c.output)
                        changed = True
                    continue
                if c.op_type not in _NORM_ELEMENTWISE:
                    continue
                inputs = [i for i in c.input if i and not g.is_constant(i)]
                if not inputs or any(i not in kind for i in inputs):
                    continue
                kinds = {kind[i] for i in inputs}
                if kinds == {"stat"}:
                    out_kind, out_depth = "stat", None
                elif "norm" in kinds:
                    if "data" in kinds or c.op_type not in _AFFINE_OPS:
                        continue
                    if kinds == {"norm"} and (len(inputs) != 1 or len(c.input) != 2):
                        continue  # y * y is the next norm's square, not a scale: only y (op) constant is affine
                    out_depth = max(depth[i] for i in inputs if kind[i] == "norm") + (kinds == {"norm"})
                    if out_depth > _MAX_AFFINE:
                        continue
                    out_kind = "norm"
                elif "stat" in kinds and "data" in kinds and c.op_type in ("Mul", "Div"):
                    out_kind, out_depth = "norm", 0  # x (or x - mean) times or over a statistic
                elif "stat" in kinds and "data" in kinds and c.op_type in ("Sub", "Add"):
                    out_kind, out_depth = "data", None  # x - E[x]
                else:
                    continue
                core[id(c)] = c
                for out in c.output:
                    kind[out] = out_kind
                    if out_depth is not None:
                        depth[out] = out_depth
                changed = True
    ops = [n.op_type for n in core.values()]
    root = any(op in ("Sqrt", "Rsqrt", "Reciprocal") for op in ops) or any(
        n.op_type == "Pow" and _square_input(g, n) is None for n in core.values()
    )
    if not root or "norm" not in kind.values():
        return None  # a sum of squares that is never turned into a scale of x: not a normalisation
    means = sum(1 for n in core.values() if n.op_type in _REDUCE_OPS and n.input[0] == x)
    return NormMatch("layernorm" if means or centred else "rmsnorm", x, tuple(n.name for n in g.nodes if id(n) in core))


def decomposed_norms(model) -> list[NormMatch]:
    """LayerNorms and RMSNorms written out of elementary ops, found by dataflow whatever the node order:
    mean-centred (ReduceMean, Sub, Pow or Mul x*x, ReduceMean, Add eps, Sqrt+Div / Rsqrt+Mul / Reciprocal+Mul),
    E[x^2] - E[x]^2 (ReduceSum / n, Max(., 0)), and without the mean (RMSNorm); the affine Mul/Add after the
    normalisation, when present, belongs to it. Fused LayerNormalization nodes are not listed (NORM_OPS)."""
    g = _Graph(model)
    found: dict[frozenset[str], NormMatch] = {}
    for node in g.nodes:
        if _square_input(g, node) is None:
            continue
        match = _match_from_square(g, node)
        if match is not None:
            found.setdefault(frozenset(match.nodes), match)
    # A square of a mean (E[x]^2) is matched from inside a larger match: keep the largest, no overlaps.
    result: list[NormMatch] = []
    taken: set[str] = set()
    for match in sorted(found.values(), key=lambda m: -len(m.nodes)):
        if taken.isdisjoint(match.nodes):
            result.append(match)
            taken.update(match.nodes)
    order = {n.name: i for i, n in enumerate(g.nodes)}
    return sorted(result, key=lambda m: min(order[n] for n in m.nodes))


def norm_nodes(model) -> list[str]:
    """Names of the nodes of every decomposed normalisation (kept in float like LayerNormalization)."""
    return [name for match in decomposed_norms(model) for name in match.nodes]


def detect_family(model) -> ModelFamily:
    """Classify an ONNX model by the operators that carry its compute (subgraphs are not inspected)."""
    initializers = {t.name for t in model.graph.initializer}
    ops = Counter(n.op_type for n in model.graph.node)
    conv = sum(ops.get(op, 0) for op in CONV_OPS)
    constants = initializers | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    dense_weighted = sum(
        1 for n in model.graph.node if n.op_type in DENSE_OPS and len(n.input) > 1 and n.input[1] in initializers
    ) + sum(1 for n in model.graph.node if n.op_type == "Einsum" and len(n.input) == 2 and constants & set(n.input))
    recurrent = sum(ops.get(op, 0) for op in RECURRENT_OPS) + ops.get("Scan", 0) + ops.get("Loop", 0)
    attention = _attention_blocks(model) + sum(ops.get(op, 0) for op in FUSED_ATTENTION_OPS)
    norms = sum(ops.get(op, 0) for op in NORM_OPS) + len(decomposed_norms(model))
    counts = {
        "conv": conv,
        "dense_with_weights": dense_weighted,
        "attention": attention,
        "layer_norm": norms,
        "recurrent": recurrent,
    }
    if recurrent and conv:
        return ModelFamily(
            "conv-recurrent", f"{conv} convolution(s) feeding {recurrent} recurrent node(s) (CRNN-like)", counts
        )
    if recurrent:
        return ModelFamily("recurrent", f"{recurrent} recurrent node(s) (LSTM/GRU/RNN/Scan/Loop)", counts)
    if attention and conv > 2:
        return ModelFamily("mixed", f"{conv} convolutions and {attention} attention block(s)", counts)
    if attention or (norms and dense_weighted >= 2 and not conv):
        what = f"{attention} attention block(s)" if attention else f"{norms} LayerNorm(s)"
        return ModelFamily("transformer", f"{what}, {dense_weighted} MatMul/Gemm with weights", counts)
    if conv:
        # A convolution, LayerNorms and dense layers without attention (byte/audio classifiers): static INT8
        # with the norms in float first; the quantize pass judges dynamic INT8 on the dense layers when that
        # does not ship (issue 19: either can win, by model).
        norms_note = f", {norms} LayerNorm(s) kept in float" if norms else ""
        return ModelFamily("convolutional", f"{conv} convolution(s), no attention{norms_note}", counts)
    if dense_weighted:
        return ModelFamily("mlp", f"{dense_weighted} MatMul/Gemm with weights, no convolution or attention", counts)
    return ModelFamily("other", "no convolution, MatMul/Gemm with weights, attention or recurrence", counts)
