"""The flow's writing steps: calibrate and write the static QDQ model, and quantize a mixed model's recurrent
ops dynamically on top of it. The quantized model stays in the flow's memory (`FlowState.keep`) for the speed
search and the fallback, which would otherwise read it back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from modelforge.quantization.qdq import DynamicModel
    from modelforge.quantization.schemes import Scheme
    from modelforge.quantization.state import FlowState


def write_static(
    state: FlowState, prepared: Path, prepared_model: onnx.ModelProto, output: Path, scheme: Scheme, exclude: list[str]
) -> None:
    """Calibrate the prepared model on the calibration data, then write the QDQ model to `output`."""
    from modelforge.model.onnx_model import io_spec, save_onnx
    from modelforge.quantization.calibration import calibrate, tensors_to_calibrate
    from modelforge.quantization.qdq import quantize_qdq
    from modelforge.runtimes.onnxruntime import fixed_batch_size

    cfg = state.config
    tensors = tensors_to_calibrate(prepared_model, set(scheme.op_types))
    data = state.inputs.calibration
    if cfg.calibration_samples is not None:
        data = data.window(0, min(cfg.calibration_samples, data.num_samples))
    batch = fixed_batch_size(io_spec(prepared_model)) or cfg.calibration_batch_size
    with state.task(f"Calibrating ({cfg.method})", total=data.num_samples) as advance:
        result = calibrate(
            prepared,
            tensors,
            data,
            method=cfg.method,
            batch_size=batch,
            percentile=cfg.percentile,
            bins=cfg.histogram_bins,
            symmetric=scheme.activation_symmetric,
            advance=advance,
            pass_name=state.name,
            model=state.models.get(prepared),
        )
    state.put("calibration_method", cfg.method)
    if cfg.method == "percentile":
        state.put("calibration_percentile", cfg.percentile)
    state.put("calibration_samples", result.samples)
    state.put("calibration_batch_size", batch)
    state.put("calibrated_tensors", len(result.ranges))
    quantized, isolated = quantize_qdq(
        prepared,
        result.ranges,
        per_channel=scheme.per_channel,
        reduce_range=scheme.reduce_range,
        activation_type=scheme.activation_type,
        weight_type=scheme.weight_type,
        activation_symmetric=scheme.activation_symmetric,
        weight_symmetric=scheme.weight_symmetric,
        op_types=list(scheme.op_types),
        exclude_nodes=exclude,
        pass_name=state.name,
        quantize_bias=scheme.quantize_bias,
        inputs_only=scheme.inputs_only,
    )
    save_onnx(quantized, output)
    state.keep(output, quantized)
    if isolated:
        state.put("isolated_nodes", isolated)
        for item in isolated:
            state.log(
                f"quantize: onnxruntime's quantizer failed on node '{item['node']}' ({item['op_type']}): "
                f"{item['action']}. Error: {item['error']}"
            )


def dynamic_extra(state: FlowState, static: Path, output: Path, scheme: Scheme, exclude: list[str]) -> DynamicModel:
    """Mixed models: the scheme's dynamic op types (LSTM) quantized dynamically on top of the static model."""
    from modelforge.quantization.qdq import write_dynamic_model

    dynamic = replace(
        scheme, mode="dynamic", op_types=scheme.dynamic_op_types, constant_weights_only=False, softmax_floor=None
    )
    return write_dynamic_model(static, output, dynamic, exclude, state.name)
