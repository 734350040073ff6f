"""The quantize pass's typed settings: scheme family, target runtime, precision, calibration, speed search and
accuracy fallback. The pass (`passes/quantize.py`) uses it as its Config; the flow (`quantization/flow.py`)
reads it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class QuantizeConfig(BaseModel):
    """The quantize pass's settings (the recipe's `config:` of a quantize step); every option typed, documented."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # as every pass Config (passes.base)

    preset: Literal["auto", "cnn", "transformer"] = Field(
        "auto",
        description="Scheme family: auto detects the model (convolutional, transformer, recurrent, mixed); cnn "
        "quantizes every supported op statically; transformer quantizes only MatMul/Gemm weights.",
    )
    target: Literal["cpu", "tensorrt", "openvino", "auto"] = Field(
        "cpu",
        description="Runtime the model is for: cpu = fastest scheme on onnxruntime (uint8/int8 QDQ, dynamic for "
        "transformers); tensorrt = int8/int8 symmetric QDQ on op inputs, float bias; openvino = OpenVINO IR "
        "(model.xml/.bin) beside model.onnx, evaluated on OpenVINO ([openvino] extra); auto = measure every "
        "installed runtime x precision here and keep the fastest that meets the gates.",
    )
    scheme: Literal["auto", "modelforge", "nncf"] = Field(
        "auto",
        description="target openvino/auto, int8: who places the quantizers. modelforge = its QDQ scheme converted "
        "to IR; nncf = NNCF's post-training quantization of the model as OpenVINO reads it; auto = build both, "
        "judge both on the gates and interleaved speed, ship the faster that passes (nncf only when installed).",
    )
    precision: Literal["int8", "int4-weights", "bf16", "fp32"] = Field(
        "int8",
        description="int8, or 4-bit block-wise MatMul weights with float activations (MatMulNBits); target "
        "openvino also: bf16 (float model, bf16 compute; CPUs with AMX or AVX-512 BF16) or fp32 (float model).",
    )
    mode: Literal["auto", "static", "dynamic"] = Field(
        "auto", description="static (calibrated activation ranges) or dynamic (ranges at run time); auto: by preset."
    )
    method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="How activation ranges are chosen from the calibration statistics."
    )
    percentile: float = Field(
        99.99, gt=50, le=100, description="percentile method: clip |x| at this percentile of the calibration data."
    )
    histogram_bins: int = Field(
        2048, ge=256, le=65536, description="entropy/percentile: histogram bins per tensor (a power of two)."
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
    activation_type: Literal["uint8", "int8"] | None = Field(
        None, description="Activation integer type (default: uint8 for cpu, int8 for tensorrt)."
    )
    weight_type: Literal["int8", "uint8"] | None = Field(None, description="Weight integer type (default: int8).")
    activation_symmetric: bool | None = Field(
        None, description="Zero point fixed at 0 for activations (default: false for cpu, true for tensorrt)."
    )
    weight_symmetric: bool | None = Field(None, description="Zero point fixed at 0 for weights (default: true).")
    op_types: list[str] | None = Field(
        None, description="Quantize only these op types (default: those of the preset's scheme)."
    )
    exclude_nodes: list[str] = Field(default_factory=list, description="Node names to keep in float.")
    softmax_floor: bool = Field(
        True,
        description="Transformers on CPU (dynamic): floor each attention Softmax input at its row maximum - 60. "
        "Same probabilities to float32 precision; avoids onnxruntime's slow path on masked (padding) scores.",
    )
    int4_block_size: int = Field(32, ge=16, description="int4-weights: weights per scale (a power of two).")
    # Language models (a Hugging Face *ForCausalLM folder): weight-only quantization of the MatMul weights.
    weights: Literal["int4", "int8"] | None = Field(
        None,
        description="Language models: weight-only quantization of every MatMul's weights to this many bits "
        "(MatMulNBits, float activations); a decoder LM folder defaults to int4.",
    )
    group_size: int | None = Field(
        None, ge=16, description="Weights per scale (a power of two; default int4_block_size, 32)."
    )
    symmetric: bool = Field(True, description="Weight-only: zero point fixed at 0 (false: one per group).")
    algo: Literal["rtn", "hqq", "gptq", "awq"] = Field(
        "rtn",
        description="Weight-only rounding: rtn (round to nearest), hqq (half-quadratic, data-free), gptq (the "
        "calibration text's second-order statistics; onnxruntime's or NNCF's), awq (NNCF's AWQ + scale estimation on "
        "the calibration text: target openvino only; onnxruntime has no CPU AWQ). hqq is onnxruntime's only.",
    )
    keep_lm_head: Literal["float", "int8", "quantize"] = Field(
        "float",
        description="Language models: the output projection (lm_head) stays float, goes to int8, or is quantized "
        "as the other weights.",
    )
    ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of the MatMul weights quantized to `weights`; the most sensitive rest (KL on the "
        "calibration text) stays int8.",
    )
    speed_aware: bool = Field(
        True,
        description="Measure on this machine which op groups INT8 makes slower (e.g. depthwise convolutions) and "
        "keep them in float; ship the float graph when no INT8 configuration beats it (never a slower model). "
        "false: quantize everything the scheme covers (smallest file, whatever its speed).",
    )
    speed_time_budget: float = Field(
        60.0, gt=0, description="Seconds the speed-aware search may spend measuring variants."
    )
    fallback: bool = Field(
        True,
        description="When the recipe has accuracy gates (max_accuracy_drop, min_cosine, min_agreement), keep the "
        "most sensitive nodes in float until they are met, measured on the eval data.",
    )
    fallback_max_nodes: int | None = Field(None, gt=0, description="Keep at most this many nodes in float.")
    time_budget: float | None = Field(
        None,
        gt=0,
        description="Seconds the fallback search may take; when they are up (or on Ctrl-C) the best model "
        "measured so far is kept and reported. NNCF's accuracy control (target openvino) gets as many, 300 when "
        "unset.",
    )
    sensitivity_samples: int = Field(
        64, gt=0, description="Eval samples used to rank node sensitivity (the budget is checked on all)."
    )
    debug_layers: int = Field(
        0,
        ge=0,
        description="Record the N worst layers (per-layer SQNR vs float, as `modelforge debug` prints) in the "
        "report; 0: off.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> QuantizeConfig:
        if self.histogram_bins & (self.histogram_bins - 1):
            raise ValueError("histogram_bins must be a power of two")
        if self.int4_block_size & (self.int4_block_size - 1):
            raise ValueError("int4_block_size must be a power of two")
        if self.group_size is not None and self.group_size & (self.group_size - 1):
            raise ValueError("group_size must be a power of two")
        if self.weights is not None:
            if self.target == "tensorrt":
                raise ValueError(
                    "weights int4/int8 (language models) runs on onnxruntime or OpenVINO: use target "
                    "cpu, openvino or auto"
                )
            if self.algo == "awq" and self.target == "cpu":
                raise ValueError(
                    "algo awq: onnxruntime has no CPU AWQ; NNCF's AWQ + scale estimation runs with --target openvino"
                )
            if self.target == "auto" and self.algo not in ("rtn", "gptq"):
                raise ValueError(
                    f"algo {self.algo}: target auto builds both runtimes, which share rtn and gptq only (awq: "
                    "--target openvino; hqq: --target cpu)"
                )
        if self.precision in ("bf16", "fp32") and self.target != "openvino":
            raise ValueError(f"precision {self.precision} is an OpenVINO execution precision: use target openvino")
        if self.target == "auto" and self.precision != "int8":
            raise ValueError("target auto measures every precision itself: leave precision at int8")
        if self.target in ("openvino", "auto") and (self.precision == "int4-weights" or self.mode == "dynamic"):
            raise ValueError(f"target {self.target} needs static QDQ: int4-weights and mode dynamic are for target cpu")
        if self.scheme == "nncf" and (self.target not in ("openvino", "auto") or self.precision != "int8"):
            raise ValueError("scheme nncf quantizes OpenVINO models to int8: use target openvino or auto, int8")
        if self.target == "tensorrt":
            if self.precision == "int4-weights":
                raise ValueError("precision int4-weights produces onnxruntime's MatMulNBits: use target cpu")
            if self.mode == "dynamic":
                raise ValueError("TensorRT runs static QDQ models only: mode dynamic is for target cpu")
            if self.activation_type == "uint8" or self.weight_type == "uint8":
                raise ValueError("TensorRT needs int8 activations and weights")
            if self.activation_symmetric is False or self.weight_symmetric is False:
                raise ValueError("TensorRT needs symmetric quantization (zero point 0)")
        return self
