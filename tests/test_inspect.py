"""`modelforge inspect`: inputs and outputs with shapes, an operator histogram, and a --json form."""

from __future__ import annotations

import json
from collections import Counter

import onnx
from conftest import DIGITS_MODEL, one_error_line, run_cli


def test_inspect_prints_inputs_shapes_and_ops():
    result = run_cli("inspect", DIGITS_MODEL)
    assert result.returncode == 0, result.explain()
    text = result.stdout
    input_row = next(line for line in text.splitlines() if " image " in line)
    assert "float32" in input_row and "[batch, 1, 8, 8]" in input_row
    output_row = next(line for line in text.splitlines() if " logits " in line)
    assert "[batch, 10]" in output_row
    histogram = Counter(n.op_type for n in onnx.load(str(DIGITS_MODEL)).graph.node)
    for op, count in histogram.items():
        row = next(line for line in text.splitlines() if f" {op} " in line)
        assert str(count) in row, (op, row)


def test_inspect_json_parses():
    result = run_cli("inspect", DIGITS_MODEL, "--json")
    assert result.returncode == 0, result.explain()
    info = json.loads(result.stdout)
    model = onnx.load(str(DIGITS_MODEL))
    assert info["format"] == "onnx"
    assert info["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert info["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}]
    assert info["ops"] == dict(Counter(n.op_type for n in model.graph.node))
    assert info["nodes"] == len(model.graph.node)
    assert info["size_bytes"] == DIGITS_MODEL.stat().st_size
    assert info["quantized"] is False
    assert info["opset"] == 17


def test_inspect_reports_a_quantized_model(quickstart):
    _, out = quickstart
    result = run_cli("inspect", out / "model.onnx", "--json")
    assert result.returncode == 0, result.explain()
    info = json.loads(result.stdout)
    assert info["quantized"] is True
    assert info["ops"]["QuantizeLinear"] > 0 and info["ops"]["DequantizeLinear"] > 0


def test_inspect_rejects_a_non_model(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    result = run_cli("inspect", junk)
    assert result.returncode == 2, result.explain()
    assert "junk.onnx" in one_error_line(result)
