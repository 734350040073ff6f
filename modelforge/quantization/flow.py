"""The INT8 quantize flow as a function, returning the model and its stage record (`target.quantize` dispatches).

Steps: detect the family (convolutional, transformer, recurrent, mixed) -> pick the scheme for the preset and
the target (`schemes.py`) -> prepare the graph (`prepare.py`) -> calibrate with bounded memory and write the
quantized model (`writing.py`) -> on this machine, keep in float what INT8 makes slower and never ship a slower
model (`search.py`, `speed.py`) -> when the run has accuracy gates, keep the most sensitive nodes in float until
they are met (`search.py`, `fallback.py`) -> when static INT8 does not ship, try dynamic INT8 on the dense layers
(`candidates.py`).

Each model is parsed once where the flow can hold it (`state.FlowState`): the source is reused to prepare the
graph, the prepared and the quantized models are handed to the calibration, the speed search and the fallback.
Defaults were chosen by measurement on onnxruntime's CPU kernels (docs/quantization.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.errors import PassError
from modelforge.quantization.state import FlowState, QuantizeInputs, self_contained

if TYPE_CHECKING:
    import onnx

    from modelforge.model.artifact import ModelArtifact
    from modelforge.quantization.config import QuantizeConfig


@dataclass
class QuantizeResult:
    """The model to go on with (labelled with the runtime and precision it is served with, by `quantize`) and
    the stage record, in the order it was filled. `artifact` is the input itself when the float model ships."""

    artifact: ModelArtifact
    record: dict[str, Any] = field(default_factory=dict)


def runtime_for(config: QuantizeConfig) -> tuple[str, str]:
    """(runtime, precision) quantized variants are measured on: where the target serves them."""
    return ("openvino", "int8") if config.target == "openvino" else ("onnxruntime", "fp32")


def quantize_int8(
    artifact: ModelArtifact, config: QuantizeConfig, inputs: QuantizeInputs, *, name: str = "quantize"
) -> QuantizeResult:
    """The INT8 flow (scheme, calibration, speed-aware search, accuracy fallback) for a cpu, tensorrt or
    openvino target; the result's artifact is `artifact` itself when the float model is the one to ship."""
    from modelforge.model.onnx_model import is_quantized, load_onnx, opset_version
    from modelforge.quantization.families import detect_family, norm_nodes
    from modelforge.quantization.graph_fixes import MIN_QUANTIZATION_OPSET
    from modelforge.quantization.prepare import prepare_for_quantization
    from modelforge.quantization.qdq import quantizable_op_types
    from modelforge.quantization.schemes import nodes_outside_scheme, resolve_scheme
    from modelforge.quantization.search import accuracy_fallback, latency_judge, never_slower, speed_search
    from modelforge.quantization.writing import dynamic_extra, write_static

    if inputs.calibration is None:
        raise PassError(name, "needs calibration data", "pass --calibration DATA")
    state = FlowState(config, inputs, runtime_for(config), name=name)
    source = load_onnx(artifact.path, load_external_data=False)
    if is_quantized(source):
        state.put("skipped", "model already contains quantized operators (QDQ or integer ops); not re-quantized")
        return QuantizeResult(artifact, state.record)

    family = detect_family(source)
    metadata = [(p.key, p.value) for p in source.metadata_props]  # kept on the quantized model
    # A self-contained model read without external data is the whole model: handed over to be prepared (and
    # let go of here, so only the preparation holds it); one with external data is read again with its weights.
    handover = [source] if self_contained(source) else []
    del source
    scheme = resolve_scheme(config, family, quantizable_op_types())
    state.put("family", family.family)
    state.put("preset", scheme.preset)
    state.put("scheme", scheme.record())
    state.log(f"quantize: {scheme.why}")

    prepared, prep_info, prepared_model = prepare_for_quantization(artifact.path, state.workdir, name, handover)
    for key, value in prep_info.items():
        state.put(key, value)
    state.keep(prepared, prepared_model)
    if scheme.per_channel and opset_version(prepared_model) < MIN_QUANTIZATION_OPSET:
        scheme = replace(scheme, per_channel=False)  # per-channel DequantizeLinear needs opset 13
        state.put("per_channel", "off: the model could not be converted to opset 13")
    exclude = sorted({*config.exclude_nodes, *nodes_outside_scheme(prepared_model, scheme)})
    if scheme.mode == "static" and (norms := norm_nodes(prepared_model)):
        state.put("norm_nodes_float", len(norms))  # decomposed LayerNorm/RMSNorm, kept float (families.py)

    output = state.workdir / "model.onnx"
    if scheme.mode == "static":
        static = state.workdir / "model-static.onnx" if scheme.dynamic_op_types else output
        write_static(state, prepared, prepared_model, static, scheme, exclude)
        if scheme.dynamic_op_types:
            state.keep(output, dynamic_extra(state, static, output, scheme, exclude).model)
    elif scheme.mode == "dynamic":
        from modelforge.quantization.qdq import write_dynamic_model

        written = write_dynamic_model(prepared, output, scheme, exclude, name)
        state.keep(output, written.model)
        if scheme.softmax_floor:
            state.put("softmax_floored", len(written.floored))
        del written
    else:
        from modelforge.quantization.qdq import write_int4_model

        write_int4_model(prepared, output, scheme, exclude, name, model=state.models.get(prepared))
    judge = latency_judge(state, prepared_model) if config.speed_aware else None

    # The static search measures the model it returns; any other model is measured against float at the end.
    measured = None
    if judge is not None and scheme.mode == "static":
        output = measured = speed_search(state, artifact.path, prepared, output, scheme, exclude, judge)

    budget = inputs.budget
    if output != artifact.path and config.fallback and budget.active and inputs.evaluation is not None:
        output = accuracy_fallback(state, prepared, output, scheme, exclude)
    if judge is not None and output not in (artifact.path, measured):
        output = never_slower(state, artifact.path, output, judge)
    if output == artifact.path or not state.record.get("fallback", {}).get("met", True):
        from modelforge.quantization.candidates import dynamic_candidate

        output = dynamic_candidate(state, artifact.path, prepared, output, scheme, judge)
    shipped = state.models.get(output)  # the shipped file as written, when the flow holds it
    state.models.clear()
    if output == artifact.path:  # INT8 did not pay on this machine: the model goes on as it came
        state.put("quantized_nodes", 0)  # (onnxruntime optimizes it at load)
        return QuantizeResult(artifact, state.record)

    if config.debug_layers:
        from modelforge.quantization.debug import compare_layers

        data = inputs.evaluation or inputs.calibration
        with state.task("Comparing layers", total=min(32, data.num_samples)) as advance:
            rows = compare_layers(prepared, output, data, state.workdir, samples=32, advance=advance)
        state.put("layers", [r.record() for r in rows[: config.debug_layers]])
    return QuantizeResult(_finish(state, output, shipped, metadata), state.record)


def _finish(
    state: FlowState, output: Path, model: onnx.ModelProto | None, metadata: list[tuple[str, str]]
) -> ModelArtifact:
    """The shipped model (`model`: its content, else read once): the original's metadata (labels,
    preprocessing notes) added, its quantized nodes counted, its artifact made."""
    import onnx

    from modelforge.model.onnx_model import load_onnx, onnx_artifact, save_onnx

    if model is None:
        model = load_onnx(output)
    present = {p.key for p in model.metadata_props}
    for key, value in metadata:
        if key not in present:
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    save_onnx(model, output)  # a large model's weights go back to its data file (the proto keeps the graph)
    state.put("quantized_nodes", _count_quantized(model))
    return onnx_artifact(output, model)


def _count_quantized(model) -> int:
    """Nodes that run on quantized inputs (QDQ), or integer kernels (dynamic, MatMulNBits)."""
    from modelforge.quantization.qdq import quantized_nodes

    integer_ops = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulNBits", "DynamicQuantizeLSTM"}
    return len(quantized_nodes(model)) + sum(1 for n in model.graph.node if n.op_type in integer_ops)
