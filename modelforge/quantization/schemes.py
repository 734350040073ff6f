"""Quantization schemes: which ops get quantized, how (static QDQ, dynamic, weight-only), with which types.

Chosen from the model family (`families.py`), the target runtime and the precision; every choice was
measured (docs/quantization.md has the figures and the commands behind them):

- cnn / mlp, target cpu: static QDQ, uint8 asymmetric activations, int8 symmetric per-channel weights, on
  every op the quantizer supports (fastest on onnxruntime's VNNI/AMX kernels).
- transformer, target cpu: dynamic INT8, int8 per-channel weights of MatMul/Gemm with constant weights;
  LayerNorm, Softmax, GELU, residual adds and the attention score products stay float; the attention
  Softmax inputs are floored at row max - 60 (`softmax.py`: same probabilities, no slow path on masked keys).
- mixed (convolutions and attention): static QDQ on convolutions, pooling and weighted MatMul/Gemm only.
- recurrent: dynamic INT8 on MatMul/Gemm and LSTM weights.
- conv-recurrent (CRNN: convolutions feeding LSTMs), target cpu: static QDQ on the convolutional and dense
  part, dynamic INT8 on the LSTM weights; each region gets the scheme that is fastest for it.
- target tensorrt: static QDQ, int8 symmetric activations and weights, Q/DQ on op inputs only (TensorRT's
  placement: weighted layers, pooling, residual adds), float bias; transformers: MatMul/Gemm with weights.
- target openvino (QDQ that OpenVINO's CPU plugin runs as INT8; chosen by measurement, benchmarks/bench_openvino.py):
  cnn / mlp: the cpu scheme (uint8 asymmetric activations, Q/DQ on every supported op) ran fastest on OpenVINO
  too (ResNet-18 1.90x over ORT FP32 vs 1.71x int8-symmetric); transformers: static uint8 QDQ on the inputs of
  MatMul/Gemm with constant weights (MiniLM 1.50x; onnxruntime's dynamic scheme ran at 0.41x on OpenVINO).
- precision int4-weights: MatMulNBits, 4-bit block-wise symmetric MatMul weights, float activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from modelforge.quantization.families import ModelFamily, norm_nodes
from modelforge.quantization.softmax import SOFTMAX_FLOOR_MARGIN

Mode = Literal["static", "dynamic", "weight-only"]

# Op types whose activations survive 8-bit quantization in transformer-like graphs (no normalisation,
# softmax, elementwise arithmetic on residual streams).
SAFE_STATIC_OPS = (
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Relu",
    "Clip",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Resize",
    "Pad",
    "Concat",
    "Split",
)
# TensorRT quantizes the inputs of these layers (its Q/DQ placement guide: weighted layers, pooling, and the
# element-wise addition of residual connections so it can fuse it into the convolution).
TENSORRT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "MaxPool", "AveragePool", "GlobalAveragePool", "Add")
DENSE_OPS = ("MatMul", "Gemm")
# Recurrent ops onnxruntime quantizes dynamically (DynamicQuantizeLSTM); GRU/RNN have no integer kernel.
RECURRENT_DYNAMIC_OPS = ("LSTM",)


@dataclass(frozen=True)
class Scheme:
    preset: str  # cnn | transformer | mixed | recurrent (what was applied, after auto)
    mode: Mode
    target: str
    op_types: tuple[str, ...]
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    reduce_range: bool = False
    quantize_bias: bool = True
    inputs_only: bool = False  # no Q/DQ on op outputs (TensorRT places them on inputs)
    constant_weights_only: bool = False  # MatMul/Gemm whose second input is an initializer
    int4_block_size: int = 32
    softmax_floor: float | None = None  # floor attention Softmax inputs at row max - this (softmax.py)
    dynamic_op_types: tuple[str, ...] = ()  # static scheme plus these ops quantized dynamically (LSTM in CRNNs)
    why: str = ""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.mode == "weight-only":
            return f"weight-only int4 (MatMulNBits, block {self.int4_block_size}, symmetric)"
        if self.mode == "dynamic":
            floor = (
                f"; attention Softmax inputs floored at row max - {self.softmax_floor:g}" if self.softmax_floor else ""
            )
            return (
                f"dynamic int8: {self.weight_type} {'per-channel' if self.per_channel else 'per-tensor'} weights, "
                f"activations quantized at run time, ops {', '.join(self.op_types)}{floor}"
            )
        act = f"{self.activation_type} {'symmetric' if self.activation_symmetric else 'asymmetric'}"
        weight = f"{self.weight_type} {'symmetric' if self.weight_symmetric else 'asymmetric'}"
        return (
            f"static QDQ: {act} activations, {weight} {'per-channel' if self.per_channel else 'per-tensor'} "
            f"weights{', Q/DQ on inputs only, float bias' if self.inputs_only else ''}"
            + (f"; dynamic int8 {', '.join(self.dynamic_op_types)}" if self.dynamic_op_types else "")
        )

    def record(self) -> dict:
        return {
            "preset": self.preset,
            "mode": self.mode,
            "target": self.target,
            "description": self.describe(),
            "why": self.why,
            "op_types": list(self.op_types) if len(self.op_types) <= 12 else "every op type the quantizer supports",
        }


PRESET_FOR_FAMILY = {
    "convolutional": "cnn",
    "mlp": "cnn",
    "other": "cnn",
    "transformer": "transformer",
    "mixed": "mixed",
    "recurrent": "recurrent",
    "conv-recurrent": "conv-recurrent",
}


def resolve_scheme(config, family: ModelFamily, supported_ops: set[str]) -> Scheme:
    """The scheme for this model: the preset (or the family's, with preset auto), the target, then the
    config's explicit overrides (types, symmetry, op types), which always win."""
    preset = PRESET_FOR_FAMILY[family.family] if config.preset == "auto" else config.preset
    why = (
        f"preset auto: detected {family.family} ({family.reason})"
        if config.preset == "auto"
        else f"preset {config.preset} chosen in the recipe (detected {family.family}: {family.reason})"
    )
    target = config.target
    dynamic_op_types: tuple[str, ...] = ()
    if config.precision == "int4-weights":
        return Scheme(
            preset=preset,
            mode="weight-only",
            target=target,
            op_types=("MatMul",),
            int4_block_size=config.int4_block_size,
            why=why + "; precision int4-weights: 4-bit MatMul weights, float activations",
        )

    if preset == "transformer" and target == "cpu":
        mode, op_types, inputs_only, const_only = "dynamic", DENSE_OPS, False, True
        why += "; transformer on CPU: dynamic int8 on MatMul/Gemm weights (per-channel), the rest float"
    elif preset == "recurrent" and target == "openvino":
        mode, op_types, inputs_only, const_only = "static", DENSE_OPS, True, True
        why += "; recurrent for OpenVINO: static QDQ on dense layers with weights, LSTM/GRU float"
    elif preset == "recurrent":
        mode, op_types, inputs_only, const_only = "dynamic", (*DENSE_OPS, "LSTM"), False, True
        why += "; recurrent: dynamic int8 on MatMul/Gemm/LSTM weights"
    elif preset == "conv-recurrent" and target == "cpu":
        # Measured on a CRNN (VGG convs + 2 BiLSTMs): static convs + dynamic LSTMs 2.01x over FP32, all-dynamic
        # 1.23x (0.34x on AVX2: dynamic ConvInteger is slow), all-static cannot quantize the LSTM.
        mode, op_types, inputs_only, const_only = "static", SAFE_STATIC_OPS, False, False
        dynamic_op_types = RECURRENT_DYNAMIC_OPS
        why += "; conv + recurrent: static QDQ on convolutions, pooling and dense layers, dynamic int8 LSTM weights"
    elif preset == "conv-recurrent":
        mode, op_types, inputs_only, const_only = "static", TENSORRT_OPS, True, False
        why += "; conv + recurrent for TensorRT: static int8 QDQ on convolutions and dense layers, LSTM float"
    elif preset == "transformer" and target == "openvino":
        mode, op_types, inputs_only, const_only = "static", DENSE_OPS, True, True
        why += "; transformer for OpenVINO: static QDQ on MatMul/Gemm inputs with constant weights, the rest float"
    elif preset == "transformer":
        mode, op_types, inputs_only, const_only = "static", DENSE_OPS, True, True
        why += "; transformer for TensorRT: static int8 QDQ on MatMul/Gemm inputs with constant weights"
    elif preset == "mixed":
        mode, op_types, inputs_only, const_only = "static", SAFE_STATIC_OPS, target == "tensorrt", True
        why += "; mixed: static QDQ on convolutions, pooling and MatMul/Gemm with weights; norms/softmax float"
    else:
        mode, const_only = "static", False
        if target == "tensorrt":
            op_types, inputs_only = TENSORRT_OPS, True
            why += "; TensorRT: static int8 symmetric QDQ on inputs of weighted layers, pooling and residual adds"
        elif target == "openvino":
            op_types, inputs_only = tuple(sorted(supported_ops)), False
            why += "; OpenVINO: static QDQ uint8/int8 per-channel on every supported op (fastest on OpenVINO too)"
        else:
            op_types, inputs_only = tuple(sorted(supported_ops)), False
            why += "; CPU: static QDQ uint8/int8 per-channel on every supported op (fastest on onnxruntime)"

    if config.mode != "auto" and config.mode != mode:
        mode = config.mode
        dynamic_op_types = ()
        why += f"; mode {config.mode} forced by the recipe"

    tensorrt = target == "tensorrt"
    activation_type = config.activation_type or ("int8" if tensorrt else "uint8")
    activation_symmetric = config.activation_symmetric if config.activation_symmetric is not None else tensorrt
    weight_type = config.weight_type or "int8"
    weight_symmetric = config.weight_symmetric if config.weight_symmetric is not None else True
    if config.op_types:
        op_types = tuple(op for op in config.op_types if op in supported_ops or mode == "dynamic")
    # Measured on MiniLM: the float Softmax on padded rows was a third of the dynamic model's time; floored,
    # 1.85x -> 2.46x (batch 1) and 2.06x -> 3.05x (batch 8) over FP32, same outputs (docs/quantization.md).
    softmax_floor = (
        SOFTMAX_FLOOR_MARGIN
        if preset == "transformer" and target == "cpu" and mode == "dynamic" and config.softmax_floor
        else None
    )
    if softmax_floor:
        why += f"; attention Softmax inputs floored at row max - {softmax_floor:g}"
    return Scheme(
        preset=preset,
        mode=mode,
        target=target,
        op_types=tuple(op_types),
        per_channel=config.per_channel,
        activation_type=activation_type,
        weight_type=weight_type,
        activation_symmetric=activation_symmetric,
        weight_symmetric=weight_symmetric,
        reduce_range=config.reduce_range,
        quantize_bias=not tensorrt,
        inputs_only=inputs_only,
        constant_weights_only=const_only,
        int4_block_size=config.int4_block_size,
        softmax_floor=softmax_floor,
        dynamic_op_types=dynamic_op_types,
        why=why,
    )


def nodes_outside_scheme(model, scheme: Scheme) -> list[str]:
    """Nodes of the scheme's op types that it still keeps in float: MatMul of two activations (e.g. the
    attention score products) when only constant weights are quantized, and, in static schemes, every node of
    a LayerNorm/RMSNorm written out of elementary ops, kept in float as the fused LayerNormalization is
    (8-bit activations around a mean and a reciprocal square root ruin it: issue 19 measured 14.7% top-1
    agreement on a byte classifier with them quantized)."""
    kept = norm_nodes(model) if scheme.mode == "static" else []
    if not scheme.constant_weights_only:
        return kept
    initializers = {t.name for t in model.graph.initializer}
    return kept + [
        n.name
        for n in model.graph.node
        if n.op_type in DENSE_OPS
        and n.op_type in scheme.op_types
        and not (len(n.input) > 1 and n.input[1] in initializers)
    ]
