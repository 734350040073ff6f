"""When static INT8 does not ship, dynamic INT8 on the dense layers is judged before float ships (issue 19
section 2; modelforge/quantization/candidates.py). No timing: speed_aware is off, the gates decide.

The model: a row-wise dense layer over scikit-learn's 8x8 digits ([N, 8 rows, 8 pixels] -> 32 features per
row, ReLU, a dense head), trained here. Its calibration data is the eval data scaled by 1/20 (calibration
that does not represent what the model serves, a real failure class): static INT8 clips every activation
at a twentieth of its range, and keeping one node in float cannot fix that; dynamic INT8 computes ranges
at run time and meets the agreement gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import FAST_LATENCY, load_report

from modelforge.quantization.candidates import shipped_dynamic_record
from modelforge.quantization.speed import MIN_WORTHWHILE_SPEEDUP
from modelforge.recipe.load import recipe_from_dict
from modelforge.run.runner import run_recipe

ROWS, HIDDEN, RIDGE = 8, 32, 100.0


def row_dense_digits(folder: Path, digits_arrays) -> tuple[Path, Path, Path]:
    from onnx import TensorProto, helper, numpy_helper

    x, y = digits_arrays
    x = (x * 16.0).reshape(-1, ROWS, 8).astype(np.float32)  # pixel values 0..16, as sklearn gives them
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:1200], order[1200:]
    # Ridge regression on random ReLU row features: a real trained head, seeded, no framework needed (the
    # ridge keeps its weights small, so 8-bit rounding of its inputs does not flip close calls).
    w1 = rng.normal(scale=0.25, size=(8, HIDDEN)).astype(np.float32)
    b1 = rng.normal(scale=0.5, size=HIDDEN).astype(np.float32)
    features = np.maximum(x @ w1 + b1, 0).reshape(len(x), -1)
    design = np.c_[features[train], np.ones(len(train))]
    targets = np.eye(10)[y[train]]
    head = np.linalg.solve(design.T @ design + RIDGE * np.eye(design.shape[1]), design.T @ targets).astype(np.float32)
    inits = [
        numpy_helper.from_array(w1, "rows/kernel"),
        numpy_helper.from_array(b1, "rows/bias"),
        numpy_helper.from_array(np.array([-1, ROWS * HIDDEN], np.int64), "flat_shape"),
        numpy_helper.from_array(head[:-1], "head/kernel"),
        numpy_helper.from_array(head[-1], "head/bias"),
    ]
    nodes = [
        helper.make_node("MatMul", ["pixels", "rows/kernel"], ["rows/mm"], name="rows/MatMul"),
        helper.make_node("Add", ["rows/mm", "rows/bias"], ["rows/add"], name="rows/Add"),
        helper.make_node("Relu", ["rows/add"], ["rows/relu"], name="rows/Relu"),
        helper.make_node("Reshape", ["rows/relu", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "head/kernel"], ["head/mm"], name="head/MatMul"),
        helper.make_node("Add", ["head/mm", "head/bias"], ["scores"], name="head/Add"),
    ]
    graph = helper.make_graph(
        nodes,
        "row_dense",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", ROWS, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = folder / "row_dense.onnx"
    onnx.save(model, str(path))
    accuracy = float(((features[test] @ head[:-1] + head[-1]).argmax(1) == y[test]).mean())
    assert accuracy > 0.9  # a real classifier
    calibration = folder / "calibration.npz"
    np.savez(calibration, pixels=x[train[:256]] / 20.0)
    evaluation = folder / "eval.npz"
    np.savez(evaluation, pixels=x[test], labels=y[test])
    return path, calibration, evaluation


def quantize(model: Path, calibration: Path, evaluation: Path, out: Path, **config):
    recipe = recipe_from_dict(
        {
            "model": str(model),
            "data": {"calibration": str(calibration), "eval_data": str(evaluation)},
            "passes": [{"name": "quantize", "config": {"speed_aware": False, **config}}],
            "evaluate": {"latency": dict(FAST_LATENCY), "skip_latency": True},
            "gates": {"min_agreement": 0.99},
            "output": {"dir": str(out)},
            "cache": False,
        }
    )
    result = run_recipe(recipe)
    return result, load_report(out)


def test_dynamic_int8_ships_when_static_cannot_meet_the_gates(tmp_path, digits_arrays):
    model, calibration, evaluation = row_dense_digits(tmp_path, digits_arrays)
    result, report = quantize(model, calibration, evaluation, tmp_path / "out", fallback_max_nodes=1)
    stage = report["stages"][-1]["metrics"]
    assert stage["family"] == "mlp"
    static, dynamic = stage["candidates"]
    assert not static["shipped"] and static["outcome"].startswith("gates not met")
    assert dynamic["shipped"] and dynamic["outcome"] == "shipped"
    assert stage["scheme"]["mode"] == "dynamic"
    assert report["summary"]["top1_agreement"] >= 0.99
    shipped = onnx.load(str(tmp_path / "out" / "model.onnx"))
    ops = {n.op_type for n in shipped.graph.node}
    assert "DequantizeLinear" not in ops and ops & {"DynamicQuantizeMatMul", "MatMulInteger"}
    assert result.exit_code == 0  # the gate passes


def test_static_int8_ships_when_it_meets_the_gates(tmp_path, digits_arrays):
    model, _, evaluation = row_dense_digits(tmp_path, digits_arrays)
    _, report = quantize(model, evaluation, evaluation, tmp_path / "out")  # representative calibration
    stage = report["stages"][-1]["metrics"]
    assert "candidates" not in stage and stage["scheme"]["mode"] == "static"
    assert report["summary"]["top1_agreement"] >= 0.99


@pytest.mark.parametrize("config", [{"mode": "static"}, {"op_types": ["MatMul", "Add", "Relu"]}])
def test_a_scheme_the_user_chose_is_not_replaced(tmp_path, digits_arrays, config):
    model, calibration, evaluation = row_dense_digits(tmp_path, digits_arrays)
    _, report = quantize(model, calibration, evaluation, tmp_path / "out", fallback_max_nodes=1, **config)
    stage = report["stages"][-1]["metrics"]
    assert "candidates" not in stage and stage["scheme"]["mode"] == "static"
    assert not stage["fallback"]["met"]


def test_the_record_of_a_shipped_dynamic_candidate_carries_its_own_ship_comparison():
    """Static INT8 lost to float, dynamic INT8 then beat it: the record's verdict and interval are the dynamic
    model's (a "quantized shipped" record with the static model's losing interval was a CI failure)."""
    static = {
        "shipped": "float",
        "decision": "clear",
        "speedup_vs_float": 0.8,
        "ship_interval": {"interval": [0.711, 0.9]},
        "float_groups": [],
        "steps": [{"group": "Conv 1x1", "kept_float": False}],
    }
    dynamic = {
        "shipped": "quantized",
        "decision": "clear",
        "speedup_vs_float": 1.4,
        "ship_interval": {"interval": [1.2, 1.6]},
    }
    record = shipped_dynamic_record(static, dynamic, "not faster than float")
    assert record["shipped"] == "quantized" and record["scheme"] == "dynamic"
    assert record["decision"] == "clear" and record["ship_interval"]["interval"][0] > MIN_WORTHWHILE_SPEEDUP
    assert record["speedup_vs_float"] == 1.4 and "1.4x" in record["reason"]
    assert record["steps"] == static["steps"]
    assert record["static_ship"] == {
        "decision": "clear",
        "speedup_vs_float": 0.8,
        "ship_interval": static["ship_interval"],
    }
