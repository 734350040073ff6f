"""Place QuantizeLinear/DequantizeLinear pairs from calibrated ranges (onnxruntime's QDQ quantizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelforge.errors import PassError

QUANT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}


def quantizable_op_types() -> set[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry)


def write_qdq_model(
    prepared: Path,
    output: Path,
    ranges: dict[str, tuple[float, float]],
    *,
    per_channel: bool,
    reduce_range: bool,
    activation_type: str,
    weight_type: str,
    activation_symmetric: bool,
    weight_symmetric: bool,
    op_types: list[str],
    exclude_nodes: list[str],
    pass_name: str,
) -> None:
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import QuantType, load_model_with_shape_infer

    from modelforge.onnx_model import save_onnx

    model = load_model_with_shape_infer(prepared)
    tensors_range = TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            for name, (lo, hi) in ranges.items()
        },
    )
    quantizer = QDQQuantizer(
        model,
        per_channel,
        reduce_range,
        getattr(QuantType, QUANT_TYPES[weight_type]),
        getattr(QuantType, QUANT_TYPES[activation_type]),
        tensors_range,
        [],  # nodes_to_quantize: all
        list(exclude_nodes),
        list(op_types),
        {"ActivationSymmetric": activation_symmetric, "WeightSymmetric": weight_symmetric},
    )
    try:
        quantizer.quantize_model()
    except Exception as exc:  # the quantizer raises bare ValueError/AssertionError on graphs it cannot handle
        raise PassError(
            pass_name, f"QDQ placement failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    save_onnx(quantizer.model.model, output)
