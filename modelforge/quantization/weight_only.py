"""Weight-only quantization of MatMul weights (onnxruntime's MatMulNBits): 4 or 8 bits per weight, one scale
(and with asymmetric groups one zero point) per `group_size` weights along the input dimension, activations in
float. The one place modelforge drives `MatMulNBitsQuantizer`: the int4-weights precision of the quantize pass
(qdq.write_int4_model) and language models (quantization.llm) both come here.

Mixed precision is two passes of the quantizer: the low-bit one skips the nodes kept at int8 or in float, the
second turns the int8 ones into 8-bit MatMulNBits and leaves the float ones alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelforge.errors import InputError

if TYPE_CHECKING:
    import onnx

# Test seam (the negative control of tests/test_llm_quantize.py): set, the quantized scales are shuffled, so a
# broken quantizer can be shown to fail the gates. Never set it outside tests.
CORRUPT_SCALES_ENV = "MODELFORGE_TEST_CORRUPT_WEIGHT_SCALES"


@dataclass(frozen=True)
class WeightOnlySettings:
    """How weights are quantized. `accuracy_level` 4: int8 compute of the activations (fastest on VNNI CPUs)."""

    bits: int = 4
    group_size: int = 32
    symmetric: bool = True
    algo: str = "rtn"  # rtn | hqq | gptq
    accuracy_level: int = 4
    # gptq: feeds of the float model (the calibration text), each a dict input name -> array
    calibration: list[dict[str, Any]] = field(default_factory=list, compare=False, repr=False)


def quantizable_matmuls(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """MatMul node name -> (input width K, output width N) for each MatMul whose second input is a 2-D float
    weight (the ones MatMulNBits replaces), in graph order."""
    import onnx

    weights = {t.name: t for t in model.graph.initializer}
    found: dict[str, tuple[int, int]] = {}
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2:
            continue
        weight = weights.get(node.input[1])
        if weight is None or len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
            continue
        found[node.name] = (int(weight.dims[0]), int(weight.dims[1]))
    return found


def check_widths(matmuls: dict[str, tuple[int, int]], group_size: int, what: str) -> None:
    """Exit 2 when no MatMul is wide enough for one group, or a wide one's input width is not a whole number of
    groups (its last group would be padded: the scales would not be what the user asked for)."""
    wide = {name: k for name, (k, _n) in matmuls.items() if k >= group_size}
    if not wide:
        widest = max((k for k, _n in matmuls.values()), default=0)
        raise InputError(
            f"{what}: no MatMul weight is large enough to quantize in groups of {group_size} "
            f"({len(matmuls)} MatMul weights, the widest input is {widest})",
            hint="a smaller --group-size, or keep the model in float",
        )
    for name, k in wide.items():
        if k % group_size:
            raise InputError(
                f"{what}: --group-size {group_size} does not divide the input width {k} of MatMul {name}",
                hint="pick a group size that divides every layer's width (a power of two dividing it)",
            )


class _Feeds:
    """A CalibrationDataReader over prepared feeds (GPTQ copies it: deepcopy must work, so plain data)."""

    def __init__(self, feeds: list[dict[str, Any]]):
        self.feeds = feeds
        self.index = 0

    def get_next(self) -> dict[str, Any] | None:
        if self.index >= len(self.feeds):
            return None
        self.index += 1
        return self.feeds[self.index - 1]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.feeds)

    def rewind(self) -> None:
        self.index = 0


def _algo_config(settings: WeightOnlySettings, bits: int) -> Any:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        GPTQWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
    )

    if settings.algo == "hqq" and bits == 4:
        return HQQWeightOnlyQuantConfig(block_size=settings.group_size, bits=bits)
    if settings.algo == "gptq" and bits == 4:
        if not settings.calibration:
            raise InputError("algo gptq needs calibration text (--calibration)")
        return GPTQWeightOnlyQuantConfig(calibration_data_reader=_Feeds(settings.calibration), block_size=128)
    return DefaultWeightOnlyQuantConfig(
        block_size=settings.group_size,
        is_symmetric=settings.symmetric,
        accuracy_level=settings.accuracy_level,
        bits=bits,
    )


def _run_quantizer(
    model: onnx.ModelProto, settings: WeightOnlySettings, bits: int, exclude: Iterable[str]
) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from modelforge.quiet import quiet

    excluded = sorted(set(exclude))
    with quiet():  # the quantizer logs on the root logger; GPTQ prints a progress bar (it would corrupt --json)
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=bits,
            block_size=settings.group_size,
            is_symmetric=settings.symmetric,
            accuracy_level=settings.accuracy_level,
            nodes_to_exclude=excluded,
            op_types_to_quantize=("MatMul",),
            algo_config=_algo_config(settings, bits),
        )
        if settings.algo == "gptq" and bits == 4:
            # GPTQ ignores nodes_to_exclude and takes every MatMul with any constant input: say it per node,
            # and leave out the MatMuls that are not a weight multiplication (quantizable_matmuls).
            node_config = quantizer._generate_q4_node_config()
            weights = quantizable_matmuls(model)
            quantizer._generate_q4_node_config = lambda: {
                name: ("fp32" if name in excluded or name not in weights else value)
                for name, value in node_config.items()
            }
            quantizer.is_symmetric = settings.symmetric
        quantizer.process()
    result = quantizer.model.model if hasattr(quantizer.model, "model") else quantizer.model
    if settings.algo == "gptq" and bits == 4:
        for node in result.graph.node:  # INC's GPTQ path writes no accuracy level
            if node.op_type == "MatMulNBits" and not any(a.name == "accuracy_level" for a in node.attribute):
                import onnx

                node.attribute.append(onnx.helper.make_attribute("accuracy_level", settings.accuracy_level))
    return result


def quantize_weights(
    model: onnx.ModelProto,
    settings: WeightOnlySettings,
    int8_nodes: Iterable[str] = (),
    float_nodes: Iterable[str] = (),
) -> onnx.ModelProto:
    """The model with its MatMul weights quantized: `settings.bits` everywhere but `int8_nodes` (8 bits, RTN) and
    `float_nodes` (left as they are). The model given is not changed."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the quantizer edits the graph it is given
    int8, kept = set(int8_nodes), set(float_nodes)
    result = _run_quantizer(copy, settings, settings.bits, int8 | kept)
    if int8 and settings.bits != 8:
        eight = WeightOnlySettings(8, settings.group_size, settings.symmetric, "rtn", settings.accuracy_level)
        result = _run_quantizer(result, eight, 8, kept)
    if os.environ.get(CORRUPT_SCALES_ENV):
        _shuffle_scales(result)
    return result


def _shuffle_scales(model: onnx.ModelProto) -> None:
    """The test seam: permute every MatMulNBits scale tensor, flip the sign of a random half and scale it 8x (a
    quantizer bug that still makes a valid graph; a permutation alone can be mild on a tiny model's similar
    scales, and without the sign flips the KL of a barely trained model can sit near the gate)."""
    import numpy as np
    from onnx import numpy_helper

    scales = {node.input[2] for node in model.graph.node if node.op_type == "MatMulNBits"}
    rng = np.random.default_rng(0)
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name in scales:
            values = numpy_helper.to_array(tensor)
            flat = values.reshape(-1).copy()
            rng.shuffle(flat)
            signs = rng.choice(np.array([-1.0, 1.0]), size=flat.shape)
            broken = (flat * signs * 8).reshape(values.shape).astype(values.dtype)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(broken, tensor.name))
