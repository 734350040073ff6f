"""A model whose weights are Constant nodes (as some exporters and hand-built graphs store them) quantizes."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from conftest import load_report, run_cli
from onnx import TensorProto, helper, numpy_helper


@pytest.fixture(scope="module")
def constant_mlp(tmp_path_factory, digits_arrays):
    """A 64-32-10 MLP fitted on digits, written with every weight and bias as a Constant node."""
    from sklearn.neural_network import MLPClassifier

    x, y = digits_arrays
    train, test = slice(0, 1200), slice(1200, None)
    mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit is all a test model needs: no convergence warning
        mlp.fit(x[train], y[train])
    w1, w2 = (w.astype(np.float32) for w in mlp.coefs_)
    b1, b2 = (b.astype(np.float32) for b in mlp.intercepts_)

    def constant(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, f"{name}_value"))

    nodes = [
        constant("W1", w1),
        constant("B1", b1),
        constant("W2T", np.ascontiguousarray(w2.T)),
        constant("B2", b2),
        helper.make_node("MatMul", ["x", "W1"], ["h_linear"]),
        helper.make_node("Add", ["h_linear", "B1"], ["h_biased"]),
        helper.make_node("Relu", ["h_biased"], ["h"]),
        helper.make_node("Gemm", ["h", "W2T", "B2"], ["scores"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    assert not model.graph.initializer  # every weight really is a Constant node

    folder = tmp_path_factory.mktemp("constant_mlp")
    onnx.save(model, str(folder / "mlp.onnx"))
    np.savez(folder / "calibration.npz", x=x[:256])
    np.savez(folder / "eval.npz", x=x[test], labels=y[test])
    return folder, float(mlp.score(x[test], y[test]))


def test_constant_node_weights_become_int8(constant_mlp):
    folder, sklearn_accuracy = constant_mlp
    out = folder / "out"
    result = run_cli(
        "quantize", folder / "mlp.onnx", "-c", folder / "calibration.npz", "-e", folder / "eval.npz", "-o", out,
        "--min-agreement", "0.95", "--threads", "1", "-q", "--no-speed-aware",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    stage = report["stages"][-1]["metrics"]
    assert stage["constants_to_initializers"] == 4
    assert stage["constants_to_initializers"] > 0

    quantized = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(quantized)
    initializers = {t.name: t for t in quantized.graph.initializer}
    producers = {o: n for n in quantized.graph.node for o in n.output}
    for node in quantized.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            weight = producers[node.input[1]]
            assert weight.op_type == "DequantizeLinear", node.name
            stored = initializers[weight.input[0]]
            assert stored.data_type == onnx.TensorProto.INT8, stored.name
    assert not [n for n in quantized.graph.node if n.op_type == "Constant" and n.output[0] in ("W1", "W2T")]

    summary = report["summary"]
    # The float ONNX graph computes what scikit-learn computes (float32 vs float64: a tie may flip one sample).
    assert summary["accuracy_baseline"] == pytest.approx(
        sklearn_accuracy, abs=1.5 / report["evaluation"]["metrics"]["samples"]
    )
    assert summary["top1_agreement"] >= 0.95
    assert summary["output_cosine"] > 0.99
    assert summary["size_bytes_result"] < summary["size_bytes_baseline"]
