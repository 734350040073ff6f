"""Which ONNX operators (and opsets) each TensorRT version's ONNX parser accepts, and a check of a whole graph.

Tables transcribed from onnx-tensorrt's docs/operators.md (operators marked supported) of the 8.5-GA,
8.6-GA and 10.1-GA releases; per-operator restrictions (e.g. 2D/3D pooling only) are not checked. A node
outside the table would make `trtexec --onnx` fail on the device, after the bundle was copied there: the check
lists all of them at once, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# JetPack release -> the TensorRT version it ships (NVIDIA's JetPack release notes).
JETPACK_TENSORRT = {
    "5.1": "8.5",
    "6.0": "8.6",
    "6.1": "10.3",
    "6.2": "10.3",
    "7.0": "10.13",
}

_TRT_85 = frozenset(
    (
        "Abs",
        "Acos",
        "Acosh",
        "Add",
        "And",
        "ArgMax",
        "ArgMin",
        "Asin",
        "Asinh",
        "Atan",
        "Atanh",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "Ceil",
        "Celu",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "ConvTranspose",
        "Cos",
        "Cosh",
        "CumSum",
        "DepthToSpace",
        "DequantizeLinear",
        "Div",
        "Dropout",
        "Einsum",
        "Elu",
        "Equal",
        "Erf",
        "Exp",
        "Expand",
        "EyeLike",
        "Flatten",
        "Floor",
        "GRU",
        "Gather",
        "GatherElements",
        "GatherND",
        "Gemm",
        "GlobalAveragePool",
        "GlobalLpPool",
        "GlobalMaxPool",
        "Greater",
        "GreaterOrEqual",
        "GridSample",
        "HardSigmoid",
        "Identity",
        "If",
        "ImageScaler",
        "InstanceNormalization",
        "IsNaN",
        "LRN",
        "LSTM",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "LogSoftmax",
        "Loop",
        "LpNormalization",
        "LpPool",
        "MatMul",
        "Max",
        "MaxPool",
        "Mean",
        "MeanVarianceNormalization",
        "Min",
        "Mul",
        "Neg",
        "NonMaxSuppression",
        "NonZero",
        "Not",
        "Or",
        "PRelu",
        "Pad",
        "ParametricSoftplus",
        "Pow",
        "QuantizeLinear",
        "RNN",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Range",
        "Reciprocal",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "ReduceSumSquare",
        "Relu",
        "Reshape",
        "Resize",
        "ReverseSequence",
        "RoiAlign",
        "Round",
        "ScaledTanh",
        "Scan",
        "Scatter",
        "ScatterElements",
        "ScatterND",
        "Selu",
        "Shape",
        "Shrink",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Size",
        "Slice",
        "Softmax",
        "Softplus",
        "Softsign",
        "SpaceToDepth",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Tan",
        "Tanh",
        "ThresholdedRelu",
        "Tile",
        "TopK",
        "Transpose",
        "Trilu",
        "Unsqueeze",
        "Upsample",
        "Where",
        "Xor",
    )
)
_TRT_86 = _TRT_85 | {"GroupNormalization", "HardSwish", "IsInf", "LayerNormalization", "Mod", "OneHot"}
_TRT_10 = _TRT_86 | {"CastLike", "DeformConv", "Gelu", "Hardmax", "Mish"}

# TensorRT version -> (supported op types of the default ONNX domain, lowest opset, highest opset).
# 10.3 and 10.13 use the 10.1 table (the newest transcribed): a lower bound of what they parse.
TENSORRT_OPS: dict[str, tuple[frozenset[str], int, int]] = {
    "8.5": (_TRT_85, 7, 17),
    "8.6": (_TRT_86, 7, 17),
    "10.3": (_TRT_10, 9, 20),
    "10.13": (_TRT_10, 9, 20),
}


@dataclass(frozen=True)
class Unsupported:
    node: str
    op_type: str
    why: str

    def text(self) -> str:
        return f"{self.node or '(unnamed)'} ({self.op_type}): {self.why}"


def tensorrt_version_for(jetpack: str) -> str:
    from modelforge.errors import InputError

    if jetpack not in JETPACK_TENSORRT:
        raise InputError(f"--jetpack {jetpack}: unknown JetPack release; expected one of {', '.join(JETPACK_TENSORRT)}")
    return JETPACK_TENSORRT[jetpack]


def _int8_zero_point(model: Any, node: Any, initializers: dict[str, Any]) -> str | None:
    """TensorRT's Q/DQ are symmetric INT8: a uint8 or non-zero zero point does not parse."""
    from onnx import TensorProto, numpy_helper

    if len(node.input) < 3 or not node.input[2]:
        return None
    zero_point = initializers.get(node.input[2])
    if zero_point is None:
        return "zero point is computed at run time (TensorRT needs a constant 0)"
    if zero_point.data_type != TensorProto.INT8:
        name = TensorProto.DataType.Name(zero_point.data_type).lower()
        return f"{name} zero point (TensorRT needs symmetric int8: quantize with --target tensorrt)"
    if numpy_helper.to_array(zero_point).any():
        return "non-zero zero point (TensorRT needs symmetric int8: quantize with --target tensorrt)"
    return None


def unsupported_nodes(model: Any, tensorrt_version: str) -> list[Unsupported]:
    """Every node the TensorRT ONNX parser of `tensorrt_version` would reject (op type, domain, Q/DQ form),
    plus the opset when it is out of the parser's range."""
    supported, low, high = TENSORRT_OPS[tensorrt_version]
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not low <= opset <= high:
        problems.append(
            Unsupported("(model)", f"opset {opset}", f"TensorRT {tensorrt_version} parses opset {low}-{high}")
        )
    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(Unsupported(node.name, node.op_type, f"custom domain '{node.domain}' (needs a plugin)"))
        elif node.op_type not in supported:
            problems.append(Unsupported(node.name, node.op_type, f"not in TensorRT {tensorrt_version}'s ONNX parser"))
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            why = _int8_zero_point(model, node, initializers)
            if why is not None:
                problems.append(Unsupported(node.name, node.op_type, why))
    return problems


def check_tensorrt_ops(model: Any, tensorrt_version: str, stage: str = "export") -> None:
    """Raise one PassError listing every unsupported node (name, op type, why)."""
    from modelforge.errors import PassError

    problems = unsupported_nodes(model, tensorrt_version)
    if problems:
        listed = "; ".join(p.text() for p in problems)
        raise PassError(
            stage,
            f"{len(problems)} node(s) TensorRT {tensorrt_version} cannot parse: {listed}",
            hint="replace those ops in the model, or target a newer JetPack",
        )
