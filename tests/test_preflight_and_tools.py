"""Pre-flight checks, dry runs, the recipe schema, explain, doctor and the stage cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "calibration" / "digits"
FAST = {"threads": 1, "warmup": 1, "min_runs": 8, "max_seconds": 2}


def modelforge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelforge", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def digits_recipe(tmp_path: Path, **overrides) -> Path:
    recipe = {
        "model": str(DIGITS / "model.onnx"),
        "data": {"calibration": str(DIGITS / "calibration.npz"), "eval_data": str(DIGITS / "eval.npz")},
        "passes": [{"name": "quantize", "config": {"speed_aware": False}}],  # same model bytes on every run
        "evaluate": {"latency": FAST},
        "output": {"dir": str(tmp_path / "out")},
        **overrides,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_preflight_lists_every_unsupported_node_at_once(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("FancyNorm", ["a"], ["b"], name="fancy_norm", domain="acme.ops"),
        helper.make_node("Relu", ["b"], ["c"], name="relu2"),
        helper.make_node("WarpDrive", ["c"], ["y"], name="warp", domain="acme.ops"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("acme.ops", 1)])
    onnx.save(model, tmp_path / "custom.onnx")
    np.savez(tmp_path / "calib.npz", x=np.ones((4, 4), dtype=np.float32))

    result = modelforge(
        "quantize", str(tmp_path / "custom.onnx"), "-c", str(tmp_path / "calib.npz"), "-o", str(tmp_path / "out")
    )
    assert result.returncode == 3, result.stderr
    assert "2 node(s) cannot run" in result.stderr
    assert "fancy_norm" in result.stderr and "FancyNorm" in result.stderr
    assert "warp" in result.stderr and "WarpDrive" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_preflight_estimates_calibration_memory(tmp_path):
    from modelforge.runtimes.preflight import activation_bytes_per_sample

    model = onnx.load(DIGITS / "model.onnx")
    per_sample = activation_bytes_per_sample(model, {"image": (1, 8, 8)})
    # conv1 16x8x8 + relu, conv2 32x8x8 + relu, pool 32x4x4, conv3 64x4x4 + relu, mean 64 (+ logits 10)
    floats = 2 * 16 * 64 + 2 * 32 * 64 + 32 * 16 + 2 * 64 * 16 + 64
    assert floats * 4 <= per_sample <= (floats + 200) * 4


def test_dry_run_validates_and_writes_nothing(tmp_path):
    recipe = digits_recipe(tmp_path)
    result = modelforge("run", str(recipe), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "quantize" in result.stdout and "Plan" in result.stderr and "540 samples" in result.stderr
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["recipe.yaml"]

    bad = digits_recipe(tmp_path, data={"calibration": str(tmp_path / "missing.npz")})
    result = modelforge("run", str(bad), "--dry-run")
    assert result.returncode == 2 and "missing.npz" in result.stderr


def test_schema_validates_shipped_recipes_and_rejects_a_broken_one(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    result = modelforge("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    broken = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    broken["gates"]["max_acuracy_drop"] = 1.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    assert "quantize" in schema["x-modelforge-passes"]


def test_explain_prints_the_documentation_of_a_key():
    result = modelforge("explain", "gates.max_accuracy_drop")
    assert result.returncode == 0
    assert "percentage points" in result.stdout and "default: None" in result.stdout
    result = modelforge("explain", "quantize.method")
    assert "minmax" in result.stdout and "entropy" in result.stdout
    result = modelforge("explain", "gates.nonsense")
    assert result.returncode == 2 and "max_accuracy_drop" in result.stderr


def test_doctor_json_describes_this_machine():
    result = modelforge("doctor", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["cpu"]["cores"] >= 1
    assert isinstance(info["cpu"]["int8_instruction_sets"], list) and info["cpu"]["int8_advice"]
    assert "CPUExecutionProvider" in info["onnxruntime"]["execution_providers"]
    assert {"torch", "tf", "tensorrt", "openvino"} <= set(info["extras"])
    runtimes = {r["runtime"]: r for r in info["runtimes"]}
    assert runtimes["onnxruntime"]["installed"] and runtimes["onnxruntime"]["precisions"]["fp32"]["usable"]
    assert info["memory"]["total_bytes"] > 0 and info["disk_free_bytes"] > 0


def _stage_cache_state(out: Path) -> str:
    return json.loads((out / "report.json").read_text())["stages"][-1]["metrics"]["cache"]


def test_stage_cache_hits_on_same_content_and_misses_on_new_bytes(tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copyfile(DIGITS / "model.onnx", model)
    recipe = digits_recipe(tmp_path, model=str(model))

    assert modelforge("run", str(recipe), "-q").returncode == 0
    assert _stage_cache_state(tmp_path / "out") == "miss"
    first = (tmp_path / "out" / "model.onnx").read_bytes()

    assert modelforge("run", str(recipe), "-q", "--force").returncode == 0
    assert _stage_cache_state(tmp_path / "out") == "hit"
    assert (tmp_path / "out" / "model.onnx").read_bytes() == first

    # Same file name, different bytes (one weight changed): never a hit.
    changed = onnx.load(model)
    weight = changed.graph.initializer[0]
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] += 0.5
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    onnx.save(changed, model)
    assert modelforge("run", str(recipe), "-q", "--force").returncode == 0
    assert _stage_cache_state(tmp_path / "out") == "miss"

    info = json.loads(modelforge("cache", "info", "--json").stdout)
    assert info["entries"] == 2
    assert modelforge("cache", "clear").returncode == 0
    assert json.loads(modelforge("cache", "info", "--json").stdout)["entries"] == 0
