"""Weight-only quantization of a decoder language model's ONNX graph, held to perplexity and KL gates.

Which MatMuls get the low-bit weights: all but the lm_head (kept as --keep-lm-head says); with `ratio` < 1 the
most sensitive rest goes to int8 until only that share of the weights is low-bit. Sensitivity of a MatMul is the
KL divergence of the next-token distribution when that MatMul alone is quantized, on a calibration slice.
When a gate fails and the fallback is on, the most sensitive low-bit MatMuls move to int8 (int8 weights: to
float), a few at a time, until the gates are met or nothing is left to move.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelforge.errors import InputError
from modelforge.evaluate.lm import KVGraph, Reference
from modelforge.quantization.config import QuantizeConfig
from modelforge.quantization.weight_only import (
    WeightOnlySettings,
    check_widths,
    quantizable_matmuls,
    quantize_weights,
)

if TYPE_CHECKING:
    import onnx

DEFAULT_GROUP_SIZE = 32
# More MatMuls than this: sensitivity is measured per decoder layer, not per MatMul.
MAX_UNITS = 32


@dataclass(frozen=True)
class LMBudget:
    """The gates the result is held to (None: not gated)."""

    max_perplexity_ratio: float | None = None
    max_token_kl: float | None = None

    def met(self, baseline_ppl: float, metrics: dict[str, float]) -> bool:
        ratio = metrics["perplexity"] / baseline_ppl if baseline_ppl else float("inf")
        ok = self.max_perplexity_ratio is None or ratio <= self.max_perplexity_ratio
        return ok and (self.max_token_kl is None or metrics["token_kl"] <= self.max_token_kl)


@dataclass
class LMResult:
    model: onnx.ModelProto
    metrics: dict[str, float]
    int8_nodes: list[str]
    float_nodes: list[str]
    low_bit_share: float  # share of the quantizable weights at `weights` bits
    fallback_steps: list[dict[str, Any]] = field(default_factory=list)
    sensitivity: list[tuple[str, float]] | None = None


def settings_of(config: QuantizeConfig, calibration: list[dict[str, Any]]) -> WeightOnlySettings:
    bits = 8 if config.weights == "int8" else 4
    group = config.group_size or config.int4_block_size or DEFAULT_GROUP_SIZE
    return WeightOnlySettings(bits, group, config.symmetric, config.algo, calibration=calibration)


def lm_head(matmuls: dict[str, tuple[int, int]]) -> str | None:
    """The output projection: onnxruntime-genai's builder names it /lm_head/MatMul."""
    return next((name for name in matmuls if "lm_head" in name), None)


def sensitivity_units(nodes: list[str]) -> list[list[str]]:
    """What sensitivity is measured on: each MatMul of a small model; each decoder layer's MatMuls together when
    there are more than MAX_UNITS MatMuls (one quantize-and-score per unit: a 135M model has 210 MatMuls)."""
    if len(nodes) <= MAX_UNITS:
        return [[name] for name in nodes]
    layers: dict[str, list[str]] = {}
    for name in nodes:
        match = re.search(r"layers\.(\d+)", name)
        layers.setdefault(match.group(0) if match else name, []).append(name)
    return list(layers.values())


def sensitivity(
    base: onnx.ModelProto,
    settings: WeightOnlySettings,
    nodes: list[str],
    all_nodes: list[str],
    reference: Reference,
    head_size: int,
    advance: Callable[[int], None] | None = None,
) -> list[tuple[str, float]]:
    """(node, KL when its unit alone is quantized), most sensitive first. Data-free rounding (rtn) is used for
    the ranking whatever the algorithm: it ranks how much each layer suffers from low-bit weights."""
    plain = WeightOnlySettings(settings.bits, settings.group_size, settings.symmetric, "rtn")
    scores = []
    for unit in sensitivity_units(nodes):
        alone = quantize_weights(base, plain, float_nodes=[n for n in all_nodes if n not in unit])
        kl = reference.compare(KVGraph(alone.SerializeToString(), head_size))["token_kl"]
        scores += [(node, kl) for node in unit]
        if advance is not None:
            advance(len(unit))
    return sorted(scores, key=lambda item: -item[1])


def quantize_lm(
    base: onnx.ModelProto,
    config: QuantizeConfig,
    evaluation: Reference,
    calibration: Reference,
    head_size: int,
    budget: LMBudget,
    calibration_feeds: list[dict[str, Any]],
    what: str,
    task: Callable[..., Any],
) -> LMResult:
    """Quantize `base` as `config` says; `task(description, total)` is the progress context (PassContext.task)."""
    settings = settings_of(config, calibration_feeds)
    matmuls = quantizable_matmuls(base)
    head = lm_head(matmuls)
    float_nodes: set[str] = set()
    int8_nodes: set[str] = set()
    if head is not None and config.keep_lm_head == "float":
        float_nodes.add(head)
    elif head is not None and config.keep_lm_head == "int8":
        int8_nodes.add(head)
    candidates = [name for name in matmuls if name not in float_nodes | int8_nodes]
    check_widths({name: matmuls[name] for name in candidates}, settings.group_size, what)
    if settings.algo == "gptq" and not settings.symmetric:
        odd = next((n for n in candidates if (matmuls[n][0] // settings.group_size) % 2), None)
        if odd is not None:  # onnxruntime's GPTQ packs two groups' zero points a byte, and breaks on an odd count
            groups = matmuls[odd][0] // settings.group_size
            raise InputError(
                f"{what}: --algo gptq --asymmetric needs an even number of groups per layer; MatMul {odd} has "
                f"{groups} ({matmuls[odd][0]} / {settings.group_size})",
                hint="use --symmetric, or a group size that gives an even count",
            )
    # Layers narrower than a group stay in float (MatMulNBits would pad them).
    float_nodes |= {name for name in candidates if matmuls[name][0] < settings.group_size}
    candidates = [name for name in candidates if name not in float_nodes]
    weights = {name: k * n for name, (k, n) in matmuls.items()}
    total = sum(weights[name] for name in candidates) or 1

    ranking: list[tuple[str, float]] | None = None

    def rank() -> list[tuple[str, float]]:
        with task("Ranking layer sensitivity (KL)", total=len(candidates)) as advance:
            return sensitivity(base, settings, candidates, list(matmuls), calibration, head_size, advance)

    if config.ratio < 1:
        ranking = rank()
        for name, _kl in ranking:
            if sum(weights[n] for n in candidates if n not in int8_nodes) / total <= config.ratio:
                break
            int8_nodes.add(name)

    def build() -> tuple[onnx.ModelProto, dict[str, float]]:
        model = quantize_weights(base, settings, int8_nodes=int8_nodes & set(matmuls), float_nodes=float_nodes)
        return model, evaluation.compare(KVGraph(model.SerializeToString(), head_size))

    baseline_ppl = evaluation.perplexity()
    with task(f"Quantizing weights to {config.weights} ({config.algo}, groups of {settings.group_size})"):
        model, metrics = build()
    steps: list[dict[str, Any]] = []
    if config.fallback and not budget.met(baseline_ppl, metrics):
        ranking = ranking or rank()
        # int4: the most sensitive go to int8 first; int8 weights: to float.
        target = int8_nodes if settings.bits == 4 else float_nodes
        movable = [name for name, _kl in ranking if name not in int8_nodes | float_nodes]
        chunk = max(1, len(movable) // 8)
        with task("Fallback: keeping the most sensitive layers at higher precision", total=len(movable)) as advance:
            while movable and not budget.met(baseline_ppl, metrics):
                moved, movable = movable[:chunk], movable[chunk:]
                target.update(moved)
                model, metrics = build()
                steps.append({"moved": moved, "to": "int8" if settings.bits == 4 else "float", **metrics})
                advance(len(moved))
    low = sum(weights[n] for n in candidates if n not in int8_nodes | float_nodes)
    return LMResult(model, metrics, sorted(int8_nodes), sorted(float_nodes), low / total, steps, ranking)
