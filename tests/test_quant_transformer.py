"""Model families: a small trained BERT-style encoder (two int64 inputs, symbolic batch and sequence) gets the
transformer scheme; TensorRT and int4-weights schemes place what their runtimes expect."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import DIGITS_MODEL, FAST_LATENCY, load_report
from onnx import numpy_helper
from quant_models import tiny_bert

from modelforge.pipeline import run_recipe
from modelforge.quantization.families import detect_family
from modelforge.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def quantize(bert, out, gates=None, **config):
    recipe = recipe_from_dict(
        {
            "model": str(bert["model"]),
            "data": {"calibration": str(bert["calibration"]), "eval_data": str(bert["eval"])},
            "passes": [{"name": "quantize", "config": config}],
            "evaluate": {"latency": dict(FAST_LATENCY), "skip_latency": True},
            "gates": gates or {},
            "output": {"dir": str(out)},
            "cache": False,
        }
    )
    result = run_recipe(recipe)
    return result, onnx.load(str(out / "model.onnx"))


def ops(model) -> set[str]:
    return {n.op_type for n in model.graph.node}


def test_family_detection():
    assert detect_family(onnx.load(str(DIGITS_MODEL))).family == "convolutional"


def test_encoder_is_detected_and_keeps_norms_softmax_and_adds_in_float(bert, tmp_path):
    model = onnx.load(str(bert["model"]))
    assert detect_family(model).family == "transformer"
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.INT64] * 2
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", "sequence"]

    result, quantized = quantize(bert, tmp_path / "auto")
    stage = result.report["stages"][-1]["metrics"]
    assert stage["family"] == "transformer" and stage["preset"] == "transformer"
    assert stage["scheme"]["mode"] == "dynamic"
    assert "MatMulInteger" in ops(quantized) or "DynamicQuantizeMatMul" in ops(quantized)
    # LayerNorm, Softmax, GELU and the residual adds read float tensors, never quantized ones.
    int_outputs = {o for n in quantized.graph.node if n.op_type in ("DequantizeLinear",) for o in n.output}
    for node in quantized.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "Erf", "Add"):
            assert not set(node.input) & int_outputs, node.name
    # The attention score products (activation x activation) stay float MatMuls.
    float_matmuls = [n for n in quantized.graph.node if n.op_type == "MatMul"]
    assert len(float_matmuls) >= 2 * 2  # two per layer
    summary = result.report["summary"]
    assert summary["output_cosine"] >= 0.99
    assert summary["accuracy_drop_pp"] <= 1.0


def test_transformer_preset_beats_quantizing_every_op(bert, tmp_path):
    auto, _ = quantize(bert, tmp_path / "auto")
    everything, quantized = quantize(bert, tmp_path / "cnn", preset="cnn")
    assert everything.report["stages"][-1]["metrics"]["preset"] == "cnn"
    assert "QuantizeLinear" in ops(quantized)
    assert auto.report["summary"]["output_cosine"] > everything.report["summary"]["output_cosine"]


def test_tensorrt_target_writes_symmetric_int8_qdq_on_op_inputs(bert, tmp_path):
    result, model = quantize(bert, tmp_path / "trt", target="tensorrt")
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qs, "TensorRT needs explicit Q/DQ"
    for node in qs:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), f"{node.name}: int8, zero point 0"
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in producers:
            # Q/DQ sit on inputs: nothing quantizes a MatMul/Gemm output.
            assert producers[node.input[0]].op_type not in ("MatMul", "Gemm"), node.name
    for node in model.graph.node:
        if node.op_type == "Gemm" and len(node.input) > 2:
            assert node.input[2] in inits and inits[node.input[2]].dtype == np.float32  # float bias
    assert result.report["stages"][-1]["metrics"]["scheme"]["target"] == "tensorrt"
    assert result.report["summary"]["output_cosine"] >= 0.98


def test_int4_weights_use_matmulnbits(bert, tmp_path):
    result, model = quantize(bert, tmp_path / "int4", precision="int4-weights", int4_block_size=16)
    assert "MatMulNBits" in ops(model)
    assert result.report["summary"]["output_cosine"] >= 0.95


def test_already_quantized_model_is_not_requantized(bert, tmp_path):
    first, _ = quantize(bert, tmp_path / "first")
    again = dict(bert, model=tmp_path / "first" / "model.onnx")
    result, _ = quantize(again, tmp_path / "again")
    assert "not re-quantized" in result.report["stages"][-1]["metrics"]["skipped"]
    assert load_report(tmp_path / "again")["summary"]["output_cosine"] > 0.9999
