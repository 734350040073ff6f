"""Weight-only quantization of a language model's OpenVINO IR with NNCF's compress_weights, held to the same
perplexity and KL gates as the onnxruntime path.

How modelforge's settings map onto NNCF's:
- --weights int4: INT4_SYM / INT4_ASYM (--symmetric / --asymmetric), in groups of --group-size; int8: INT8_SYM /
  INT8_ASYM per output channel (NNCF has no groups at 8 bits).
- --keep-lm-head float: the lm_head MatMul in NNCF's ignored scope; int8: NNCF's default, which keeps the last
  layer at its backup precision (INT8_ASYM); quantize: all_layers, so it gets --weights too. The token embedding
  is NNCF's "first layer": INT8_ASYM (its backup precision) unless quantize puts it at --weights as well. With
  tied embeddings the two share one constant: a float lm_head keeps the embedding float too (as on onnxruntime);
  the record reads back what each actually got.
- --ratio: NNCF's ratio (the rest at INT8_ASYM, ranked by NNCF's sensitivity: the weights' own quantization error
  without calibration text, the Hessian of the layer inputs with it).
- --algo rtn: data-free; awq: AWQ + scale estimation on the calibration text; gptq: NNCF's GPTQ. hqq is
  onnxruntime's only (refused here).
- The fallback: when a gate fails, the ratio steps down (the most sensitive layers go to INT8_ASYM; for int8
  weights nothing is left to move) until the gates are met or every layer is at INT8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.errors import InputError
from modelforge.quantization.config import QuantizeConfig
from modelforge.quantization.llm import DEFAULT_GROUP_SIZE, LMBudget

OV_ALGOS = ("rtn", "awq", "gptq")
FALLBACK_STEP = 0.2


@dataclass
class OVLMResult:
    model: Any  # ov.Model
    metrics: dict[str, float]
    record: dict[str, Any]
    fallback_steps: list[dict[str, Any]] = field(default_factory=list)


def check_ov_config(config: QuantizeConfig, has_calibration: bool) -> None:
    """The settings NNCF cannot honour, refused before any export (exit 2)."""
    if config.algo not in OV_ALGOS:
        raise InputError(
            f"--algo {config.algo} is not available on OpenVINO: NNCF's compress_weights supports "
            f"{', '.join(OV_ALGOS)} (awq = AWQ + scale estimation)",
            hint="use --target cpu for hqq",
        )
    if config.algo in ("awq", "gptq") and not has_calibration:
        raise InputError(f"algo {config.algo} needs calibration text: pass --calibration TEXT.txt")
    if config.weights == "int8" and (config.ratio < 1 or config.algo != "rtn"):
        raise InputError(
            "--weights int8 on OpenVINO is per-channel round-to-nearest: --ratio and --algo awq/gptq are for int4"
        )


def lm_head_name(model: Any) -> str | None:
    """The MatMul that produces the logits (a Convert or a Multiply may sit between, e.g. a logit scale)."""
    node = model.output("logits").get_node().input_value(0).get_node()
    for _ in range(4):
        if node.get_type_name() == "MatMul":
            return node.get_friendly_name()
        if node.get_input_size() == 0:
            return None
        node = node.input_value(0).get_node()
    return None


def weight_precisions(model: Any) -> dict[str, tuple[str, int]]:
    """MatMul -> (its weight constant's element type as stored: int4, int8, float, ...; element count), for the
    MatMuls whose second input is a constant behind at most a decompression chain (Convert, Subtract, Multiply,
    Reshape): what NNCF actually did, layer by layer."""
    found: dict[str, tuple[str, int]] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        node = _weight_constant(op.input_value(1).get_node())
        if node is None:
            continue
        count = 1
        for dim in node.get_shape():
            count *= int(dim)
        found[op.get_friendly_name()] = (_label(node), count)
    return found


def _weight_constant(node: Any) -> Any:
    """The Constant behind a weight input (through Convert, Subtract, Multiply, Reshape), or None."""
    for _ in range(8):
        if node.get_type_name() == "Constant" or node.get_input_size() == 0:
            break
        node = node.input_value(0).get_node()
    return node if node.get_type_name() == "Constant" else None


def _label(constant: Any) -> str:
    kind = constant.get_element_type().get_type_name()  # i4, u4, i8, u8, f32, f16...
    return {"i4": "int4", "u4": "int4", "i8": "int8", "u8": "int8"}.get(kind, "float")


def embedding_precision(model: Any) -> str | None:
    """The token embedding's stored precision: the largest constant table a Gather reads."""
    tables = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Gather":
            constant = _weight_constant(op.input_value(0).get_node())
            if constant is not None and len(constant.get_shape()) == 2:
                rows, cols = (int(d) for d in constant.get_shape())
                tables.append((rows * cols, _label(constant)))
    return max(tables)[1] if tables else None


def tied_embedding(model: Any, head: str | None) -> str | None:
    """The Gather that reads the lm_head's own weight constant (tied embeddings), or None."""
    matmul = next((op for op in model.get_ordered_ops() if op.get_friendly_name() == head), None)
    weight = _weight_constant(matmul.input_value(1).get_node()) if matmul is not None else None
    if weight is None:
        return None
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Gather":
            table = _weight_constant(op.input_value(0).get_node())
            if table is not None and table.get_friendly_name() == weight.get_friendly_name():
                return op.get_friendly_name()
    return None


def compress_options(
    config: QuantizeConfig, head: str | None, ratio: float, data_aware: bool, tied: str | None = None
) -> dict[str, Any]:
    """compress_weights' keyword arguments for `config` at `ratio` (dataset aside). A float lm_head tied to the
    embedding keeps the embedding float too: they are one constant, and NNCF would give it the embedding's INT8."""
    import nncf

    kept = [name for name in (head, tied) if name]

    modes = {
        ("int4", True): nncf.CompressWeightsMode.INT4_SYM,
        ("int4", False): nncf.CompressWeightsMode.INT4_ASYM,
        ("int8", True): nncf.CompressWeightsMode.INT8_SYM,
        ("int8", False): nncf.CompressWeightsMode.INT8_ASYM,
    }
    options: dict[str, Any] = {"mode": modes[(config.weights or "int4", config.symmetric)]}
    if config.weights == "int8":
        return options | ({"ignored_scope": nncf.IgnoredScope(names=kept)} if kept and _head_float(config) else {})
    options["group_size"] = config.group_size or config.int4_block_size or DEFAULT_GROUP_SIZE
    options["ratio"] = ratio
    if config.keep_lm_head == "quantize":
        options["all_layers"] = True
    elif config.keep_lm_head == "float" and kept:
        options["ignored_scope"] = nncf.IgnoredScope(names=kept)
    if config.algo == "awq":
        options.update(awq=True, scale_estimation=True)
    elif config.algo == "gptq":
        options["gptq"] = True
    if ratio < 1 and data_aware:
        options["sensitivity_metric"] = nncf.SensitivityMetric.HESSIAN_INPUT_ACTIVATION
    return options


def _head_float(config: QuantizeConfig) -> bool:
    return config.keep_lm_head == "float"


def compress_lm(
    fp32: Path,
    config: QuantizeConfig,
    feeds: list[dict[str, Any]] | None,
    evaluate: Callable[[Any], dict[str, float]],
    baseline_ppl: float,
    budget: LMBudget,
    task: Callable[..., Any],
) -> OVLMResult:
    """Compress the IR at `fp32` as `config` says; `evaluate(model)` scores a candidate against the original;
    with the fallback on, the ratio steps down until the gates are met."""
    import nncf
    import openvino as ov

    from modelforge.quiet import quiet

    core = ov.Core()
    original = core.read_model(str(fp32))
    head = lm_head_name(original)
    tied = tied_embedding(original, head)
    del original
    data_aware = feeds is not None and (config.algo != "rtn" or config.ratio < 1)
    dataset = nncf.Dataset(feeds) if data_aware else None

    def build(ratio: float) -> tuple[Any, dict[str, float], dict[str, Any]]:
        options = compress_options(config, head, ratio, data_aware, tied)
        size = max(1, len(feeds or []))
        with quiet():  # NNCF's bit-width table and progress bars go to stdout (they would corrupt --json)
            model = nncf.compress_weights(core.read_model(str(fp32)), dataset=dataset, subset_size=size, **options)
        return model, evaluate(model), options

    what = f"Compressing weights with NNCF ({config.weights}, {config.algo}"
    with task(what + (f", groups of {config.group_size or DEFAULT_GROUP_SIZE})" if config.weights == "int4" else ")")):
        model, metrics, options = build(config.ratio)
    steps: list[dict[str, Any]] = []
    ratio = config.ratio
    if config.fallback and config.weights == "int4" and not budget.met(baseline_ppl, metrics):
        with task("Fallback: lowering NNCF's ratio (the most sensitive layers to INT8)"):
            while ratio > 0 and not budget.met(baseline_ppl, metrics):
                ratio = max(0.0, round(ratio - FALLBACK_STEP, 6))
                model, metrics, options = build(ratio)
                steps.append({"ratio": ratio, **metrics})
    layers = weight_precisions(model)
    # The share is of the layers that were candidates (as on onnxruntime): a float lm_head by choice is not one.
    shared = {name: v for name, v in layers.items() if not (name == head and _head_float(config))}
    total = sum(count for _, count in shared.values()) or 1
    record = {
        "int8_layers": sorted(name for name, (label, _) in layers.items() if label == "int8"),
        "float_layers": sorted(name for name, (label, _) in layers.items() if label == "float"),
        "low_bit_share": sum(n for label, n in shared.values() if label == (config.weights or "int4")) / total,
        "nncf_mode": str(options["mode"].value),
        "group_size": options.get("group_size"),  # None: per output channel (int8)
        "ratio": ratio,
        "lm_head": head,
        # As read back from the compressed IR: a tied embedding shares its constant with the lm_head, so what
        # one gets the other has too (NNCF's INT8 backup for the embedding reaches a "float" lm_head).
        "lm_head_precision": layers[head][0] if head in layers else None,
        "embedding_precision": embedding_precision(model),
        "tied_embedding": tied is not None,
        "awq": bool(options.get("awq")),
        "scale_estimation": bool(options.get("scale_estimation")),
        "gptq": bool(options.get("gptq")),
        "data_aware": data_aware,
        "calibration_windows": len(feeds or []) if data_aware else 0,
    }
    return OVLMResult(model, metrics, record, steps)
