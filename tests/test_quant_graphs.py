"""Graphs as they come: external-data weights, Constant weights on the dynamic path, unsupported operators
(exit 3 naming the node), and the QDQ editing the fallback relies on."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, load_report, one_error_line, run_cli
from onnx import TensorProto, helper, numpy_helper

from modelforge.quantization.isolation import failing_node
from modelforge.quantization.qdq import keep_in_float, quantized_nodes


def run(model, feeds):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_external_data_model_quantizes(tmp_path):
    model = onnx.load(str(DIGITS_MODEL))
    path = tmp_path / "external" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (path.parent / "weights.bin").is_file()
    out = tmp_path / "out"
    result = run_cli("quantize", path, "-c", DIGITS_CALIBRATION, "-e", DIGITS_EVAL, "-o", out, "--threads", "1")
    assert result.returncode == 0, result.explain()
    assert load_report(out)["summary"]["accuracy_drop_pp"] <= 1.0


def test_constant_weights_are_quantized_on_the_dynamic_path(tmp_path):
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal((32, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["W1"], value=numpy_helper.from_array(w1, "W1v")),
        helper.make_node("Constant", [], ["W2"], value=numpy_helper.from_array(w2, "W2v")),
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "W2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "mlp.onnx"))
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((64, 16)).astype(np.float32))
    out = tmp_path / "out"
    result = run_cli(
        "quantize",
        tmp_path / "mlp.onnx",
        "-c",
        tmp_path / "cal.npz",
        "-o",
        out,
        "--preset",
        "transformer",
        "-q",
        "--no-speed-aware",
    )
    assert result.returncode == 0, result.explain()
    quantized = onnx.load(str(out / "model.onnx"))
    assert "MatMulInteger" in {n.op_type for n in quantized.graph.node}
    assert not any(n.op_type == "Constant" and n.output[0] in ("W1", "W2") for n in quantized.graph.node)
    stage = load_report(out)["stages"][-1]["metrics"]
    assert stage["constants_to_initializers"] >= 2 and stage["quantized_nodes"] == 2


def test_unsupported_operator_exits_3_naming_the_node(tmp_path):
    node = helper.make_node("FancyOp", ["x"], ["y"], name="my_custom_layer", domain="com.example")
    graph = helper.make_graph(
        [node],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    np.savez(tmp_path / "cal.npz", x=np.ones((8, 4), np.float32))
    result = run_cli("quantize", tmp_path / "custom.onnx", "-c", tmp_path / "cal.npz", "-o", tmp_path / "out")
    assert result.returncode == 3, result.explain()
    line = one_error_line(result)
    assert "my_custom_layer" in line and "FancyOp" in line


def test_quantizer_errors_name_the_node_being_quantized():
    class OpQuantizer:  # onnxruntime's op quantizers keep the node they work on as `self.node`
        def __init__(self, node):
            self.node = node

        def quantize(self):
            raise ValueError("unsupported")

    node = helper.make_node("Resize", ["x"], ["y"], name="upsample_3")
    with pytest.raises(ValueError) as info:
        OpQuantizer(node).quantize()
    assert failing_node(info.value) == ("upsample_3", "Resize")


def test_keeping_every_node_in_float_gives_back_the_float_outputs(tmp_path):
    """The fallback's graph edit: folded Relus are restored and float graph outputs leave their Q/DQ."""
    out = tmp_path / "out"
    result = run_cli(
        "quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-o", out, "-q", "--threads", "1", "--no-speed-aware"
    )
    assert result.returncode == 0, result.explain()
    quantized = onnx.load(str(out / "model.onnx"))
    float_model = onnx.load(str(DIGITS_MODEL))
    names = {name for name, _ in quantized_nodes(quantized)}
    assert names, "the QDQ model has quantized nodes"
    restored = keep_in_float(quantized, float_model, names)
    onnx.checker.check_model(restored)
    path = tmp_path / "restored.onnx"
    onnx.save(restored, str(path))
    x = np.load(DIGITS_EVAL)["image"][:64]
    np.testing.assert_allclose(run(path, {"image": x}), run(DIGITS_MODEL, {"image": x}), rtol=1e-4, atol=1e-4)
    assert not quantized_nodes(restored)
