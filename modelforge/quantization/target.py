"""The quantize entry point: dispatch on the target (cpu, tensorrt, openvino in int8/bf16/fp32, auto) and label the
result with the runtime and precision it is served with. The INT8 work is `flow.quantize_int8`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelforge.quantization.flow import QuantizeResult, quantize_int8

if TYPE_CHECKING:
    from modelforge.model.artifact import ModelArtifact
    from modelforge.quantization.config import QuantizeConfig
    from modelforge.quantization.state import QuantizeInputs


def quantize(
    artifact: ModelArtifact, config: QuantizeConfig, inputs: QuantizeInputs, *, name: str = "quantize"
) -> QuantizeResult:
    """Quantize for the target; the result is labelled with the runtime and precision it is served with."""
    from modelforge.runtimes.serving import check_offered, serve_on

    if config.target == "auto":
        from modelforge.quantization.auto_target import choose_target

        return choose_target(artifact, config, inputs, name=name)
    runtime = "openvino" if config.target == "openvino" else "onnxruntime"
    if runtime == "openvino":
        check_offered(runtime, config.precision)
        if config.precision in ("bf16", "fp32"):  # the float model, run by OpenVINO in that precision
            record = {"target": {"runtime": runtime, "precision": config.precision, "quantized": False}}
            return QuantizeResult(serve_on(artifact, runtime, config.precision), record)
    if runtime == "openvino":  # modelforge's QDQ scheme and NNCF's, the faster that passes (ov_schemes.py)
        from modelforge.quantization.ov_schemes import quantize_openvino

        result = quantize_openvino(artifact, config, inputs, name=name)
    else:
        result = quantize_int8(artifact, config, inputs, name=name)
    already_quantized = "skipped" in result.record  # a QDQ model given as input runs as INT8 too
    precision = "int8" if result.artifact.path != artifact.path or already_quantized else "fp32"
    result.record["target"] = {"runtime": runtime, "precision": precision, "quantized": precision == "int8"}
    if "openvino_scheme" in result.record:
        result.record["target"]["scheme"] = result.record["openvino_scheme"]["chosen"]
    return QuantizeResult(serve_on(result.artifact, runtime, precision), result.record)
