"""What kind of model is this? Convolutional, transformer encoder, recurrent, plain MLP, or a mix.

The answer picks the quantization scheme (see `schemes.py`): static INT8 on every op suits CNNs; on a
transformer it ruins accuracy (LayerNorm, Softmax, GELU and residual adds do not survive 8-bit activations),
so only the MatMul/Gemm weights are quantized there.
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


def _manual_layer_norms(model) -> int:
    """LayerNorm decomposed by an exporter: ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt -> Div."""
    ops = Counter(n.op_type for n in model.graph.node)
    return min(ops.get("ReduceMean", 0) // 2, ops.get("Sqrt", 0), ops.get("Pow", 0))


def detect_family(model) -> ModelFamily:
    """Classify an ONNX model by the operators that carry its compute (subgraphs are not inspected)."""
    initializers = {t.name for t in model.graph.initializer}
    ops = Counter(n.op_type for n in model.graph.node)
    conv = sum(ops.get(op, 0) for op in CONV_OPS)
    dense_weighted = sum(
        1 for n in model.graph.node if n.op_type in DENSE_OPS and len(n.input) > 1 and n.input[1] in initializers
    )
    recurrent = sum(ops.get(op, 0) for op in RECURRENT_OPS) + ops.get("Scan", 0) + ops.get("Loop", 0)
    attention = _attention_blocks(model) + sum(ops.get(op, 0) for op in FUSED_ATTENTION_OPS)
    norms = sum(ops.get(op, 0) for op in NORM_OPS) + _manual_layer_norms(model)
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
    if attention or (norms and dense_weighted >= 2 and conv <= 2):
        what = f"{attention} attention block(s)" if attention else f"{norms} LayerNorm(s)"
        return ModelFamily("transformer", f"{what}, {dense_weighted} MatMul/Gemm with weights", counts)
    if conv:
        return ModelFamily("convolutional", f"{conv} convolution(s), no attention", counts)
    if dense_weighted:
        return ModelFamily("mlp", f"{dense_weighted} MatMul/Gemm with weights, no convolution or attention", counts)
    return ModelFamily("other", "no convolution, MatMul/Gemm with weights, attention or recurrence", counts)
