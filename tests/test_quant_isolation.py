"""A failure of onnxruntime's quantizer on one node isolates that node; it does not end the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelforge.quantization.graph_fixes import flatten_row_biases, upgrade_opset
from modelforge.quantization.isolation import quantize_isolating, weight_axes
from modelforge.quantization.qdq import quantize_qdq_once, write_qdq_model

SETTINGS = dict(
    per_channel=True,
    reduce_range=False,
    activation_type="uint8",
    weight_type="int8",
    activation_symmetric=False,
    weight_symmetric=True,
    op_types=["Gemm", "Relu"],
    quantize_bias=True,
    inputs_only=False,
)


def two_gemms(row_bias: bool) -> onnx.ModelProto:
    """x -> Gemm(W, b) -> Relu -> Gemm(W2, b2): b is [1, 8] (as tf2onnx/jax2tf write it) or [8]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.normal(size=(16, 8)) * 0.3).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(1, 8) if row_bias else (8,)).astype(np.float32), "b"),
        numpy_helper.from_array((rng.normal(size=(8, 4)) * 0.3).astype(np.float32), "W2"),
        numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="gemm"),
        helper.make_node("Relu", ["y"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["z"], name="gemm2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def ranges_for(model: onnx.ModelProto, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """Exact activation ranges of every tensor on `x` (what calibration would measure)."""
    outputs = ["y", "r", "z"]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in outputs[:-1]:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    values = ort.InferenceSession(probe.SerializeToString()).run(outputs, {"x": x})
    ranges = {"x": (float(x.min()), float(x.max()))}
    ranges.update({name: (float(v.min()), float(v.max())) for name, v in zip(outputs, values, strict=True)})
    return ranges


def run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    source = model if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(str(source) if isinstance(source, Path) else source).run(None, {"x": x})[0]


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32)


def test_row_bias_node_is_retried_per_tensor_and_the_rest_stays_per_channel(tmp_path, x):
    model = two_gemms(row_bias=True)
    onnx.save(model, tmp_path / "float.onnx")
    isolated = write_qdq_model(
        tmp_path / "float.onnx",
        tmp_path / "q.onnx",
        ranges_for(model, x),
        exclude_nodes=[],
        pass_name="quantize",
        **SETTINGS,
    )
    assert [(i["node"], i["action"]) for i in isolated] == [("gemm", "per-tensor weights (per-channel failed)")]
    assert "ambiguous" in isolated[0]["error"]
    quantized = onnx.load(tmp_path / "q.onnx")
    axes = weight_axes(quantized)
    assert "W2" in axes and "W" not in axes  # gemm2 per-channel, gemm per-tensor
    reference, result = run(model, x), run(tmp_path / "q.onnx", x)
    cosine = float((reference * result).sum() / np.linalg.norm(reference) / np.linalg.norm(result))
    assert cosine > 0.999


def test_a_node_failing_even_per_tensor_is_kept_in_float_and_found_by_bisection(x):
    """onnxruntime names no node for this failure: bisection over the quantized prefix finds gemm2."""
    model = two_gemms(row_bias=False)
    ranges = ranges_for(model, x)
    calls = []

    def attempt(nodes_to_quantize, exclude, axes):
        calls.append(nodes_to_quantize)
        quantizing_gemm2 = "gemm2" not in exclude and (not nodes_to_quantize or "gemm2" in nodes_to_quantize)
        if quantizing_gemm2:  # injected: a whole-graph step of the quantizer that raises for this node
            raise ValueError("The truth value of an array with more than one element is ambiguous.")
        return quantize_qdq_once(
            model, ranges, nodes_to_quantize=nodes_to_quantize, exclude_nodes=exclude, axes=axes, **SETTINGS
        )

    quantized, isolated = quantize_isolating(attempt, model, SETTINGS["op_types"], [], per_channel=True)
    assert [(i["node"], i["action"]) for i in isolated] == [("gemm2", "kept in float (per-tensor weights failed too)")]
    assert any(calls[i] for i in range(len(calls)))  # bisection ran on prefixes of the node list
    gemm2 = next(n for n in quantized.graph.node if n.name == "gemm2")
    assert gemm2.input[1] == "W2"  # its float weight: the node runs in float
    assert weight_axes(quantized) == {"W": 1}  # gemm still quantized per-channel (Gemm weight axis 1)
    reference, result = run(model, x), run(quantized, x)
    assert np.abs(reference - result).max() < 0.1 * np.abs(reference).max()


def test_too_many_failures_end_the_run_with_the_quantizer_error(x):
    model = two_gemms(row_bias=False)

    def attempt(nodes_to_quantize, exclude, axes):
        raise ValueError("broken quantizer")

    with pytest.raises(ValueError, match="broken quantizer"):
        quantize_isolating(attempt, model, SETTINGS["op_types"], [], per_channel=True)


def test_row_biases_are_flattened_only_where_broadcasting_is_unchanged():
    model = two_gemms(row_bias=True)
    assert flatten_row_biases(model) == 1
    assert [list(t.dims) for t in model.graph.initializer if t.name == "b"] == [[8]]
    assert flatten_row_biases(model) == 0


def test_opset_11_is_upgraded_to_13_with_the_same_outputs(x):
    model = two_gemms(row_bias=False)
    model.opset_import[0].version = 11
    before = run(model, x)
    assert upgrade_opset(model) == (11, 13)
    assert model.opset_import[0].version == 13
    np.testing.assert_allclose(run(model, x), before, rtol=1e-6)
    assert upgrade_opset(model) is None
