"""Accuracy-aware fallback and per-layer debugging on a CNN whose activations carry an outlier channel.

Plain INT8 loses most of its accuracy there (per-tensor activation scales cannot hold the outlier and the
other channels at once); the fallback must find the one convolution that reads that tensor, keep it in float,
meet the budget, and report what it kept and what it cost. `modelforge debug` must name that layer first.
"""

from __future__ import annotations

import json

import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, load_report, run_cli
from quant_models import outlier_cnn, outlier_consumer


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return outlier_cnn(tmp_path_factory.mktemp("outlier"))


def quantize_cli(model, out, *flags):
    # --no-speed-aware: these tests are about accuracy; at batch 1 the small test models run faster in float.
    return run_cli(
        "quantize",
        model,
        "-c",
        DIGITS_CALIBRATION,
        "-e",
        DIGITS_EVAL,
        "-o",
        out,
        "--threads",
        "1",
        "--no-speed-aware",
        *flags,
    )


def test_plain_int8_misses_the_budget_that_fallback_meets(outlier, tmp_path):
    plain = quantize_cli(outlier, tmp_path / "plain", "--max-accuracy-drop", "1", "--no-fallback")
    assert plain.returncode == 1, plain.explain()  # the gate fails, the report is still written
    assert load_report(tmp_path / "plain")["summary"]["accuracy_drop_pp"] > 10

    result = quantize_cli(outlier, tmp_path / "fallback", "--max-accuracy-drop", "1")
    assert result.returncode == 0, result.explain()
    report = load_report(tmp_path / "fallback")
    assert report["summary"]["accuracy_drop_pp"] <= 1
    fallback = report["stages"][-1]["metrics"]["fallback"]
    assert fallback["met"] is True
    kept = [n["name"] for n in fallback["float_nodes"]]
    assert kept == [outlier_consumer(outlier)], "the fewest nodes: only the convolution reading the outlier"
    node = fallback["float_nodes"][0]
    assert node["op_type"] == "Conv" and "sensitivity" in node["why"]
    assert fallback["metrics_all_quantized"]["accuracy_drop_pp"] > 10
    assert set(fallback["speed_cost"]) >= {"latency_p50_ms_all_quantized", "latency_p50_ms_with_fallback", "slowdown"}
    assert "eval data" in fallback["tuned_on"]


def test_unreachable_budget_exits_1_with_the_best_result_and_the_reason(outlier, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "run",
        _recipe(tmp_path, outlier, out, gates={"min_cosine": 1.0}, config={"fallback_max_nodes": 1}),
    )
    assert result.returncode == 1, result.explain()
    report = load_report(out)
    fallback = report["stages"][-1]["metrics"]["fallback"]
    assert fallback["met"] is False
    assert "budget not met" in fallback["reason"] and "at most 1 nodes" in fallback["reason"]
    assert len(fallback["float_nodes"]) == 1  # the best model found is the one written
    assert report["summary"]["output_cosine"] > 0.99
    assert (out / "model.onnx").is_file()


def test_debug_names_the_worst_layer_first(outlier):
    result = run_cli("debug", outlier, "-c", DIGITS_CALIBRATION, "--samples", "16", "--json")
    assert result.returncode == 0, result.explain()
    layers = json.loads(result.stdout)["layers"]
    assert layers[0]["node"].startswith(outlier_consumer(outlier))
    assert layers[0]["quantized"] is True
    assert layers[0]["added_sqnr_db"] < 10 < layers[-1]["sqnr_db"] or layers[0]["added_sqnr_db"] < 10
    table = run_cli("debug", outlier, "-c", DIGITS_CALIBRATION, "--samples", "16", "--top", "3")
    assert table.returncode == 0, table.explain()
    assert outlier_consumer(outlier) in table.stdout and "Added SQNR" in table.stdout


def _recipe(folder, model, out, gates, config):
    """A recipe beside a copy of the model: a recipe may only name files in its own folder or the project."""
    import shutil

    import yaml

    model = shutil.copy(model, folder / model.name)
    path = folder / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": str(model),
                "data": {"calibration": str(DIGITS_CALIBRATION), "eval_data": str(DIGITS_EVAL)},
                "passes": [{"name": "quantize", "config": config}],
                "evaluate": {"skip_latency": True},
                "gates": gates,
                "output": {"dir": str(out)},
            }
        )
    )
    return path


def test_report_section_lists_the_worst_layers(outlier, tmp_path):
    out = tmp_path / "out"
    # No default gates: they would steer the fallback to keep the outlier's consumer in float, and the layers
    # compared are those of the plain INT8 model.
    recipe = _recipe(tmp_path, outlier, out, gates={"default_gates": False}, config={"debug_layers": 3})
    result = run_cli("run", recipe, "-q")
    assert result.returncode == 0, result.explain()
    layers = load_report(out)["stages"][-1]["metrics"]["layers"]
    assert len(layers) == 3
    assert layers[0]["node"].startswith(outlier_consumer(outlier))
    assert {"sqnr_db", "local_sqnr_db", "added_sqnr_db", "cosine", "op_type"} <= set(layers[0])


def test_time_budget_keeps_the_best_result_so_far(outlier, tmp_path):
    out = tmp_path / "out"
    result = quantize_cli(outlier, out, "--max-accuracy-drop", "1", "--time-budget", "0.001", "-q")
    assert result.returncode == 1, result.explain()  # stopped before meeting the budget: the gate fails
    report = load_report(out)
    fallback = report["stages"][-1]["metrics"]["fallback"]
    assert "time budget" in fallback["stopped"] and fallback["met"] is False
    assert "best result kept" in fallback["reason"]
    assert (out / "model.onnx").is_file() and (out / "report.html").is_file()


def test_ctrl_c_during_the_search_keeps_the_best_result_and_its_report(outlier, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import numpy as np

    work = tmp_path / "tmp"
    work.mkdir()
    out = tmp_path / "out"
    # Ten times the eval set and every sample in the sensitivity ranking: a search that lasts a few seconds.
    with np.load(DIGITS_EVAL) as arrays:
        np.savez(tmp_path / "eval.npz", image=np.tile(arrays["image"], (10, 1, 1, 1)),
                 labels=np.tile(arrays["labels"], 10))  # fmt: skip
    recipe = _recipe(tmp_path, outlier, out, gates={"max_accuracy_drop": 0.01}, config={"sensitivity_samples": 5400})
    text = recipe.read_text().replace(str(DIGITS_EVAL), str(tmp_path / "eval.npz"))
    recipe.write_text(text)
    process = subprocess.Popen(
        [sys.executable, "-m", "modelforge", "run", str(recipe), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(work)},
    )  # fmt: skip
    deadline = time.time() + 120
    # The search is under way once its second candidate model has been written.
    while time.time() < deadline and not list(work.glob("modelforge-work-*/*/fallback/candidate-0002.onnx")):
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (0, 1), stderr
    fallback = load_report(out)["stages"][-1]["metrics"]["fallback"]
    assert fallback["stopped"] == "interrupted (Ctrl-C)"
    assert (out / "model.onnx").is_file()


def test_judge_without_kept_reference_outputs_measures_the_same(outlier, monkeypatch):
    """Large eval sets: the float outputs are recomputed beside each candidate instead of held in memory."""
    from conftest import DIGITS_EVAL as eval_path

    from modelforge.data import bind, open_dataset
    from modelforge.model.onnx_model import onnx_artifact
    from modelforge.quantization.fallback import OutputJudge
    from modelforge.recipe.schema import DataSource

    artifact = onnx_artifact(outlier)
    data = bind(open_dataset(DataSource(path=eval_path)), artifact.io)
    kept = OutputJudge(outlier, data, 32, 1, "test")
    monkeypatch.setattr(OutputJudge, "REFERENCE_BYTES", 0)
    streamed = OutputJudge(outlier, data, 32, 1, "test")
    assert kept.reference is not None and streamed.reference is None
    assert kept.measure(outlier) == streamed.measure(outlier)
