"""`quantize`: INT8 post-training static quantization to a QDQ ONNX model, calibrated on sample data.

Defaults were chosen by measurement on onnxruntime's CPU kernels (see README, "Why these defaults"):
uint8 asymmetric activations with int8 symmetric per-channel weights in QDQ form.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelforge.artifact import ModelArtifact
from modelforge.errors import PassError
from modelforge.passes import register
from modelforge.passes.base import Pass, PassConfig, PassContext


class QuantizeConfig(PassConfig):
    method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="How activation ranges are chosen from the calibration statistics."
    )
    calibration_samples: int | None = Field(
        None, gt=0, description="Calibrate on at most this many samples (default: all given)."
    )
    calibration_batch_size: int = Field(
        8,
        gt=0,
        description="Samples per calibration batch (peak memory grows with it, not with the sample count).",
    )
    per_channel: bool = Field(True, description="One weight scale per output channel (keeps accuracy on CNNs).")
    reduce_range: bool = Field(
        False, description="7-bit weights: avoids int16 overflow on CPUs without VNNI, at some accuracy cost."
    )
    activation_type: Literal["uint8", "int8"] = Field("uint8", description="Activation integer type.")
    weight_type: Literal["int8", "uint8"] = Field("int8", description="Weight integer type.")
    activation_symmetric: bool = Field(False, description="Zero point fixed at 0 for activations.")
    weight_symmetric: bool = Field(True, description="Zero point fixed at 0 for weights.")
    op_types: list[str] | None = Field(
        None, description="Quantize only these op types (default: every op type the quantizer supports)."
    )
    exclude_nodes: list[str] = Field(default_factory=list, description="Node names to keep in float.")


@register
class QuantizeInt8(Pass):
    name = "quantize"
    description = "INT8 post-training static quantization (QDQ), calibrated on sample data"
    accepts = ("onnx",)
    produces = "onnx"
    needs_calibration = True
    Config = QuantizeConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        from modelforge.backends.onnxruntime import fixed_batch_size
        from modelforge.onnx_model import is_quantized, load_onnx, onnx_artifact
        from modelforge.quantization.calibration import calibrate_minmax, tensors_to_calibrate
        from modelforge.quantization.prepare import prepare_for_quantization
        from modelforge.quantization.qdq import quantizable_op_types, write_qdq_model

        cfg: QuantizeConfig = self.config
        if cfg.method != "minmax":
            raise PassError(self.name, f"calibration method {cfg.method!r} is not available yet", "use minmax")
        if ctx.calibration is None:
            raise PassError(self.name, "needs calibration data", "pass --calibration DATA")
        if is_quantized(load_onnx(artifact.path, load_external_data=False)):
            ctx.record("skipped", "model already contains quantized operators; not re-quantized")
            return artifact

        prepared, prep_info = prepare_for_quantization(artifact.path, ctx.workdir, self.name)
        for key, value in prep_info.items():
            ctx.record(key, value)
        supported = quantizable_op_types()
        op_types = sorted(set(cfg.op_types) & supported if cfg.op_types else supported)
        tensors = tensors_to_calibrate(load_onnx(prepared, load_external_data=False), set(op_types))

        data = ctx.calibration
        if cfg.calibration_samples is not None:
            data = data.window(0, min(cfg.calibration_samples, data.num_samples))
        batch = fixed_batch_size(artifact.io) or cfg.calibration_batch_size
        with ctx.task("Calibrating", total=data.num_samples) as advance:
            ranges = calibrate_minmax(prepared, tensors, data, batch, None, advance, self.name)
        ctx.record("calibration_method", cfg.method)
        ctx.record("calibration_samples", data.num_samples)
        ctx.record("calibrated_tensors", len(ranges))

        output = ctx.workdir / "model.onnx"
        write_qdq_model(
            prepared,
            output,
            ranges,
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
            activation_type=cfg.activation_type,
            weight_type=cfg.weight_type,
            activation_symmetric=cfg.activation_symmetric,
            weight_symmetric=cfg.weight_symmetric,
            op_types=op_types,
            exclude_nodes=cfg.exclude_nodes,
            pass_name=self.name,
        )
        _copy_metadata(artifact, output)
        result = onnx_artifact(output)
        ctx.record("quantized_nodes", _count_quantized(output))
        return result


def _copy_metadata(source: ModelArtifact, target) -> None:
    """Keep the original's metadata (labels, preprocessing notes) on the quantized model."""
    import onnx

    from modelforge.onnx_model import load_onnx, save_onnx

    original = load_onnx(source.path, load_external_data=False)
    model = onnx.load(str(target))
    present = {p.key for p in model.metadata_props}
    for prop in original.metadata_props:
        if prop.key not in present:
            model.metadata_props.append(prop)
    save_onnx(model, target)


def _count_quantized(path) -> int:
    """Nodes whose weight or activation inputs come through DequantizeLinear."""
    from modelforge.onnx_model import load_onnx

    model = load_onnx(path, load_external_data=False)
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return sum(
        1
        for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_outputs for i in n.input)
    )
