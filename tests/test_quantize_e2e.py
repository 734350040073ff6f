"""Digits INT8 end to end through the CLI: outputs, report schema, accuracy, manifest, determinism, gates."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import (
    DIGITS,
    DIGITS_CALIBRATION,
    DIGITS_EVAL,
    DIGITS_MODEL,
    OUTPUT_FILES,
    SUMMARY_KEYS,
    digits_recipe,
    fresh_cache_env,
    leftovers,
    load_report,
    one_error_line,
    ort_predictions,
    run_cli,
    sha256,
    write_recipe,
)


def test_quickstart_writes_every_output(quickstart):
    result, out = quickstart
    assert result.returncode == 0, result.explain()
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert "PASSED" in result.stderr
    assert leftovers(out.parent) == []


def test_quickstart_report_schema(quickstart):
    result, out = quickstart
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    assert isinstance(report["schema_version"], int)
    summary = report["summary"]
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    assert not missing, missing
    for key in SUMMARY_KEYS:
        assert summary[key] is not None, key  # labels and latency exist: every figure is measured
    assert report["passed"] is True
    gates = report["gates"]
    # the recipe's gate, and the default sanity gate on the metric the recipe leaves open (a classifier output)
    assert [(g["name"], g["default"]) for g in gates] == [("max_accuracy_drop", False), ("min_agreement", True)]
    assert gates[1]["threshold"] == 0.99 and gates[1]["passed"] is True
    assert gates[0]["threshold"] == 0.5
    assert gates[0]["passed"] is True
    assert gates[0]["value"] == pytest.approx(summary["accuracy_drop_pp"])
    assert summary["speedup"] == pytest.approx(summary["latency_p50_ms_baseline"] / summary["latency_p50_ms_result"])
    assert [s["name"] for s in report["stages"]] == ["quantize"]
    markdown = (out / "report.md").read_text()
    assert "PASSED" in markdown and "accuracy" in markdown.lower()


def test_quickstart_keeps_accuracy_and_shrinks_the_model(quickstart):
    _, out = quickstart
    summary = load_report(out)["summary"]
    assert summary["accuracy_baseline"] > 0.95
    assert summary["accuracy_drop_pp"] <= 0.5
    assert summary["accuracy_drop_pp"] == pytest.approx(
        (summary["accuracy_baseline"] - summary["accuracy_result"]) * 100
    )
    assert summary["top1_agreement"] >= 0.98
    assert summary["output_cosine"] > 0.99
    assert summary["size_ratio"] > 2
    assert summary["size_bytes_baseline"] == DIGITS_MODEL.stat().st_size
    assert summary["size_bytes_result"] == (out / "model.onnx").stat().st_size


def test_reported_accuracy_matches_onnxruntime(quickstart):
    """The report's accuracies, recomputed independently with onnxruntime on the eval set."""
    _, out = quickstart
    summary = load_report(out)["summary"]
    data = np.load(DIGITS_EVAL)
    x, y = data["image"], data["labels"]
    assert summary["accuracy_baseline"] == pytest.approx(np.mean(ort_predictions(DIGITS_MODEL, x) == y))
    assert summary["accuracy_result"] == pytest.approx(np.mean(ort_predictions(out / "model.onnx", x) == y))


def test_quantized_model_is_valid_qdq_with_same_interface(quickstart):
    _, out = quickstart
    original = onnx.load(str(DIGITS_MODEL))
    quantized = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(quantized)  # includes topological order: other runtimes insist on it
    assert [i.name for i in quantized.graph.input] == [i.name for i in original.graph.input]
    assert [o.name for o in quantized.graph.output] == [o.name for o in original.graph.output]
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Every Conv/Gemm weight is stored as int8 and dequantized in the graph.
    initializers = {t.name: t for t in quantized.graph.initializer}
    for node in quantized.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            producer = next(n for n in quantized.graph.node if node.input[1] in n.output)
            assert producer.op_type == "DequantizeLinear"
            assert initializers[producer.input[0]].data_type == onnx.TensorProto.INT8
    # The original's metadata (class labels, provenance) is carried over.
    original_meta = {p.key: p.value for p in original.metadata_props}
    quantized_meta = {p.key: p.value for p in quantized.metadata_props}
    assert original_meta.items() <= quantized_meta.items()


def test_manifest_lists_every_file_with_hash_and_size(quickstart):
    _, out = quickstart
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert set(listed) == on_disk
    assert {"model.onnx", "report.json", "report.md", "recipe.resolved.yaml"} <= on_disk
    for name, entry in listed.items():
        assert entry["sha256"] == sha256(out / name), name
        assert entry["size_bytes"] == (out / name).stat().st_size, name
    assert manifest["data_sha256"]["calibration"] == sha256(DIGITS_CALIBRATION)
    assert manifest["data_sha256"]["eval_data"] == sha256(DIGITS_EVAL)
    assert manifest["recipe"]["passes"][0]["name"] == "quantize"
    assert manifest["recipe"] == load_report(out)["recipe"]
    assert {"onnx", "onnxruntime", "numpy"} <= set(manifest["versions"])


def test_same_recipe_twice_gives_identical_model(tmp_path):
    recipe = write_recipe(tmp_path / "recipe.yaml", digits_recipe(tmp_path / "unused", evaluate={"skip_latency": True}))
    # Each run gets its own empty stage cache: the second run must recompute, not reuse the first result.
    first = run_cli("run", recipe, "-o", tmp_path / "first", "-q", env=fresh_cache_env(tmp_path / "cache1"))
    second = run_cli("run", recipe, "-o", tmp_path / "second", "-q", env=fresh_cache_env(tmp_path / "cache2"))
    assert first.returncode == 0, first.explain()
    assert second.returncode == 0, second.explain()
    assert (tmp_path / "first" / "model.onnx").read_bytes() == (tmp_path / "second" / "model.onnx").read_bytes()


def test_resolved_recipe_replays_to_the_same_model(quickstart, tmp_path):
    """recipe.resolved.yaml is the recipe the flags made: replayed from another folder, it rebuilds the model."""
    _, out = quickstart
    replay = run_cli(
        "run", out / "recipe.resolved.yaml", "-o", tmp_path / "replay", "-q", "--allow-paths", DIGITS, cwd=tmp_path,
        env=fresh_cache_env(tmp_path / "cache"),
    )  # fmt: skip
    assert replay.returncode == 0, replay.explain()
    assert (tmp_path / "replay" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()


def test_held_back_samples_without_eval_data(tmp_path):
    out = tmp_path / "out"
    result = run_cli("quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-o", out, "-q", "--threads", "1")
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    n = len(np.load(DIGITS_CALIBRATION)["image"])
    held = report["evaluation"]["metrics"]["samples"]
    assert 0 < held < n
    assert "held-back calibration samples" in report["evaluation"]["data"]
    # The held-back samples are not calibrated on.
    assert report["stages"][-1]["metrics"]["calibration_samples"] == n - held
    summary = report["summary"]
    assert summary["top1_agreement"] is not None and summary["top1_agreement"] > 0.9
    assert summary["output_cosine"] is not None and summary["output_cosine"] > 0.99
    assert summary["accuracy_baseline"] is None
    assert summary["accuracy_result"] is None
    assert summary["accuracy_drop_pp"] is None
    assert "data_sha256" in json.loads((out / "manifest.json").read_text())


def test_failed_gate_exits_1_and_still_writes_the_report(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-e", DIGITS_EVAL, "-o", out, "--min-speedup", "1000",
        "--min-agreement", "0.5", "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 1, result.explain()
    assert "FAILED" in result.stderr and "min_speedup" in result.stderr
    report = load_report(out)
    assert report["passed"] is False
    gates = {g["name"]: g for g in report["gates"]}
    assert gates["min_speedup"]["passed"] is False
    assert gates["min_speedup"]["threshold"] == 1000
    assert gates["min_speedup"]["value"] == pytest.approx(report["summary"]["speedup"])
    assert gates["min_agreement"]["passed"] is True
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert "FAILED" in (out / "report.md").read_text()


def test_accuracy_gate_without_labels_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    result = run_cli("quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-o", out, "--max-accuracy-drop", "1")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert "labels" in line
    assert "Calibrating" not in result.stderr
    assert not out.exists()
    assert leftovers(tmp_path) == []
