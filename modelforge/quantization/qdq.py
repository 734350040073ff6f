"""Write the quantized model: QDQ pairs from calibrated ranges, dynamic INT8, or 4-bit weights (MatMulNBits).

Also edits a QDQ model after the fact: `keep_in_float` puts chosen nodes back in float (the accuracy-aware
fallback) without re-running the quantizer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from modelforge.errors import PassError, first_line
from modelforge.quantization.isolation import failing_node

if TYPE_CHECKING:
    import onnx

    from modelforge.quantization.schemes import Scheme

QUANT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def quantizable_op_types() -> set[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry)


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizers log warnings on the root logger (e.g. per-channel axes of LayerNorm scales);
    passes report through their context, never on stderr."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _fail(pass_name: str, what: str, exc: BaseException) -> PassError:
    text = first_line(exc)
    where = failing_node(exc)
    at = f" at node '{where[0]}' ({where[1]})" if where else ""
    return PassError(pass_name, f"{what}{at}: {text}", hint="exclude the node (exclude_nodes) or its op type")


def write_qdq_model(prepared: Path, output: Path, ranges: dict[str, tuple[float, float]], **settings) -> list[dict]:
    """`quantize_qdq`, saved to `output`; returns the isolated nodes' records."""
    from modelforge.model.onnx_model import save_onnx

    quantized, isolated = quantize_qdq(prepared, ranges, **settings)
    save_onnx(quantized, output)
    return isolated


def quantize_qdq(
    prepared: Path,
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
    quantize_bias: bool = True,
    inputs_only: bool = False,
) -> tuple[onnx.ModelProto, list[dict[str, str]]]:
    """The QDQ model of the prepared model, in memory (the caller saves it, and may keep using it).
    `inputs_only`: no Q/DQ on op outputs (TensorRT's placement); `quantize_bias`: int32 bias (CPU).

    A failure of onnxruntime's quantizer on some node does not end the run: the node is isolated
    (`quantization.isolation`), retried with per-tensor weights, else kept in float. Returns, with the model,
    one record per isolated node (name, op type, what was done, the quantizer's error) for the report."""
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    from modelforge.quantization.isolation import quantize_isolating

    model = load_model_with_shape_infer(prepared)
    settings = dict(
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=activation_type,
        weight_type=weight_type,
        activation_symmetric=activation_symmetric,
        weight_symmetric=weight_symmetric,
        op_types=list(op_types),
        quantize_bias=quantize_bias,
        inputs_only=inputs_only,
    )

    def attempt(nodes_to_quantize, exclude, per_tensor_axes):
        return quantize_qdq_once(
            model, ranges, nodes_to_quantize=nodes_to_quantize, exclude_nodes=exclude, axes=per_tensor_axes, **settings
        )

    try:
        return quantize_isolating(attempt, model, list(op_types), list(exclude_nodes), per_channel=per_channel)
    except Exception as exc:  # the quantizer raises bare ValueError/AssertionError on graphs it cannot handle
        raise _fail(pass_name, "QDQ placement failed", exc) from exc


def quantize_qdq_once(
    model,
    ranges: dict[str, tuple[float, float]],
    *,
    nodes_to_quantize: list[str] | None,
    exclude_nodes: list[str],
    axes: dict[str, int] | None,
    per_channel: bool,
    reduce_range: bool,
    activation_type: str,
    weight_type: str,
    activation_symmetric: bool,
    weight_symmetric: bool,
    op_types: list[str],
    quantize_bias: bool,
    inputs_only: bool,
):
    """One run of onnxruntime's QDQ quantizer on a copy of `model`; raises what the quantizer raises.

    `axes`: weights to quantize per-channel on that axis, everything else per-tensor (the global per-channel
    flag is then off): how one node's weights are retried per-tensor while the rest stay per-channel."""
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import QuantType

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    tensors_range = TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            for name, (lo, hi) in ranges.items()
        },
    )
    extra = {
        "ActivationSymmetric": activation_symmetric,
        "WeightSymmetric": weight_symmetric,
        "QuantizeBias": quantize_bias,
    }
    if inputs_only:
        extra["OpTypesToExcludeOutputQuantization"] = list(op_types)
    if axes is not None:
        extra["TensorQuantOverrides"] = {name: [{"axis": axis}] for name, axis in axes.items()}
    quantizer = QDQQuantizer(
        copy,
        per_channel and axes is None,
        reduce_range,
        getattr(QuantType, QUANT_TYPES[weight_type]),
        getattr(QuantType, QUANT_TYPES[activation_type]),
        tensors_range,
        list(nodes_to_quantize or []),  # empty: all
        list(exclude_nodes),
        list(op_types),
        extra,
    )
    with quiet_quantizer():
        quantizer.quantize_model()
    # The quantizer appends Q/DQ nodes after the nodes they feed; ONNX requires topological order
    # (onnxruntime's own quantize_static sorts when saving; other runtimes and onnx.checker insist on it).
    quantizer.model.topological_sort()
    return quantizer.model.model


class DynamicModel(NamedTuple):
    """A model written by dynamic quantization: its parsed form (the graph, without its weights when they went
    to an external data file) and the attention Softmax nodes floored."""

    model: onnx.ModelProto
    floored: list[str]


def write_dynamic_model(
    prepared: Path, output: Path, scheme: Scheme, exclude_nodes: list[str], pass_name: str
) -> DynamicModel:
    """Dynamic INT8: weights quantized now, activations at run time from each batch's own range. With
    `scheme.softmax_floor`, the attention Softmax inputs are floored (`softmax.py`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    large = prepared.stat().st_size > (1 << 30) or prepared.with_name(prepared.name + ".data").exists()
    try:
        with quiet_quantizer():
            quantize_dynamic(
                prepared,
                output,
                op_types_to_quantize=list(scheme.op_types),
                per_channel=scheme.per_channel,
                reduce_range=scheme.reduce_range,
                weight_type=getattr(QuantType, QUANT_TYPES[scheme.weight_type]),
                nodes_to_exclude=list(exclude_nodes),
                use_external_data_format=large,
                extra_options={
                    "MatMulConstBOnly": scheme.constant_weights_only,
                    "WeightSymmetric": scheme.weight_symmetric,
                },
            )
    except Exception as exc:
        raise _fail(pass_name, "dynamic quantization failed", exc) from exc
    return drop_shape_annotations(output, softmax_floor=scheme.softmax_floor)


def drop_shape_annotations(path: Path, softmax_floor: float | None = None) -> DynamicModel:
    """Remove the intermediate shapes that graph preparation annotated (value_info), as exporters leave them.

    With them, onnxruntime fuses residual Add + LayerNormalization into SkipLayerNormalization, which is
    slower than the two ops on this CPU class: MiniLM-L6 dynamic INT8 ran 1.6x faster than FP32 with the
    annotations and 2.1-2.5x without (benchmarks/transformer.py). onnxruntime infers the shapes it needs itself.
    With `softmax_floor`, the attention Softmax inputs are floored first (the annotations give their dtypes);
    returns the model as saved and the names of the Softmax nodes floored.
    """
    from modelforge.model.onnx_model import load_onnx, save_onnx
    from modelforge.quantization.softmax import floor_attention_softmax

    model = load_onnx(path)
    floored = floor_attention_softmax(model, softmax_floor) if softmax_floor else []
    del model.graph.value_info[:]
    save_onnx(model, path)
    return DynamicModel(model, floored)


def write_int4_model(
    prepared: Path,
    output: Path,
    scheme: Scheme,
    exclude_nodes: list[str],
    pass_name: str,
    model: onnx.ModelProto | None = None,
) -> None:
    """4-bit block-wise symmetric weights for MatMul with constant weights (onnxruntime's MatMulNBits).
    `model`: the prepared model when the caller holds it with its weights (copied, not changed)."""
    from modelforge.model.onnx_model import load_onnx, save_onnx
    from modelforge.quantization.weight_only import WeightOnlySettings, quantize_weights

    if model is None:
        model = load_onnx(prepared)
    settings = WeightOnlySettings(bits=4, group_size=scheme.int4_block_size, symmetric=True)
    try:
        result = quantize_weights(model, settings, float_nodes=exclude_nodes)  # copies the model it is given
    except Exception as exc:
        raise _fail(pass_name, "int4 weight quantization failed", exc) from exc
    save_onnx(result, output)


# ---------------------------------------------------------------------------------------------- editing


def prune_dead(model) -> None:
    """Drop nodes whose outputs nobody reads and initializers no node reads (after rewiring)."""
    graph = model.graph
    wanted = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(out in wanted for out in node.output):
            keep.append(node)
            wanted.update(i for i in node.input if i)
    keep.reverse()
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)


def quantized_nodes(model) -> list[tuple[str, str]]:
    """(name, op_type) of nodes running on quantized inputs: any input comes through a DequantizeLinear,
    or the node is an integer kernel written by dynamic / weight-only quantization."""
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    out = []
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        if any(i in dq_outputs for i in node.input):
            out.append((node.name, node.op_type))
    return out


def keep_in_float(qdq_model, float_model, nodes: set[str]):
    """A copy of `qdq_model` where `nodes` read their original float inputs and weights again.

    Works on QDQ graphs written from `float_model`: node names and the float tensors they read are
    unchanged by the quantizer, so each input that now comes through Q/DQ is pointed back at the float
    tensor, float weights are copied back, and Q/DQ nodes nobody reads any more are dropped. An activation
    the quantizer folded into its producer (Relu/Clip before a Q/DQ pair: the uint8 range does the clipping)
    is put back in front of the float node, which would otherwise read the unclipped tensor.
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    originals = {n.name: n for n in float_model.graph.node if n.name}
    float_producers = {o: n for n in float_model.graph.node for o in n.output}
    float_inits = {t.name: t for t in float_model.graph.initializer}
    present = {t.name for t in model.graph.initializer}
    q_producers = {o: n for n in model.graph.node for o in n.output}
    restored: dict[str, str] = {}  # tensor -> name of its restored activation's output
    inserts: list[tuple[str, onnx.NodeProto]] = []  # (before node, new node)

    def float_weight(name: str) -> str:
        """The float initializer `name` in the edited model, under a new name where a node of the QDQ model
        already produces that name (the quantizer gives a dequantized int32 bias its float name, also when
        the bias is shared with a node that stays quantized)."""
        if name not in float_inits:
            return name
        renamed = f"{name}_float" if name in q_producers else name
        if renamed not in present:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(float_inits[name])
            tensor.name = renamed
            model.graph.initializer.append(tensor)
            present.add(renamed)
        return renamed

    for node in model.graph.node:
        if node.name not in nodes or node.name not in originals:
            continue
        source = originals[node.name]
        for index, name in enumerate(source.input):
            if index >= len(node.input):
                continue
            if node.input[index] == name:
                producer = q_producers.get(name)
                if producer is not None and producer.op_type == "DequantizeLinear":
                    node.input[index] = float_weight(name)
                continue
            if name in float_inits:
                node.input[index] = float_weight(name)
                continue
            wanted = float_producers.get(name)
            actual = q_producers.get(name)
            if wanted is not None and actual is not None and actual.name != wanted.name:
                if name not in restored:
                    activation = onnx.NodeProto()
                    activation.CopyFrom(wanted)
                    activation.name = f"{wanted.name}_float"
                    del activation.input[:]
                    activation.input.extend([name, *(float_weight(extra) for extra in wanted.input[1:])])
                    del activation.output[:]
                    activation.output.append(f"{name}_float")
                    restored[name] = activation.output[0]
                    inserts.append((node.name, activation))
                name = restored[name]
            node.input[index] = name
    for before, activation in inserts:
        position = next(i for i, n in enumerate(model.graph.node) if n.name == before)
        model.graph.node.insert(position, activation)
    _unquantize_graph_outputs(model, nodes)
    prune_dead(model)
    return model


def _unquantize_graph_outputs(model, float_nodes: set[str]) -> None:
    """A graph output computed by a float node leaves it in float: its Q/DQ pair is bypassed."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for output in model.graph.output:
        dq = producers.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        origin = producers.get(q.input[0])
        if origin is None or origin.name not in float_nodes:
            continue
        inner = q.input[0]
        for node in model.graph.node:
            if node.op_type == "DequantizeLinear" and node.output[0] == output.name:
                continue
            for index, name in enumerate(node.input):
                if name == inner:
                    node.input[index] = output.name
        for index, name in enumerate(origin.output):
            if name == inner:
                origin.output[index] = output.name
        dq.output[0] = f"{output.name}_unused"
