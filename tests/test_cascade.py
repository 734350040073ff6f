"""`modelforge cascade`: one ONNX graph where a small digits classifier answers and a large one takes the rows the
small one is unsure of. Both are trained here (torch MLPs on scikit-learn digits, a few seconds), exported to
ONNX; the graph is checked row by row against the two models run separately, on onnxruntime and OpenVINO, in a
Triton repository, with the threshold input moved, and through `drift`'s escalation share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


def _train(model, x, y, epochs: int):
    import torch

    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for i in range(0, len(xt), 128):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[i : i + 128]), yt[i : i + 128]).backward()
            optimizer.step()
    return model.eval()


def _export(model, path: Path, features: int = 64, dynamic: bool = True) -> Path:
    import torch

    torch.onnx.export(
        model,
        (torch.zeros(2, features),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
        opset_version=17,
        dynamo=False,
    )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A large MLP (~99% on held-out digits) and a weak small one (a linear layer trained 2 epochs, ~89%)."""
    import torch
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("cascade")
    x, y = load_digits(return_X_y=True)
    x, y = (x / 16).astype(np.float32), y.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    torch.manual_seed(0)
    large = _train(
        torch.nn.Sequential(
            torch.nn.Linear(64, 128),
            torch.nn.ReLU(),
            torch.nn.Linear(128, 128),
            torch.nn.ReLU(),
            torch.nn.Linear(128, 10),
        ),
        x[:1300],
        y[:1300],
        30,
    )
    torch.manual_seed(0)
    small = _train(torch.nn.Sequential(torch.nn.Linear(64, 10)), x[:1300], y[:1300], 2)
    regression = torch.nn.Sequential(torch.nn.Linear(64, 1))
    narrow = torch.nn.Sequential(torch.nn.Linear(32, 10))
    eval_x, eval_y = x[1300:], y[1300:]
    np.savez(folder / "eval.npz", x=eval_x, labels=eval_y)
    np.savez(folder / "unlabelled.npz", x=eval_x)
    # Shifted inputs: the small model grows unsure of most rows, so the escalation share rises.
    shifted = np.clip(eval_x * 0.5 + np.random.default_rng(1).uniform(0, 0.5, eval_x.shape), 0, 1).astype(np.float32)
    np.savez(folder / "shifted.npz", x=shifted)
    return {
        "folder": folder,
        "small": _export(small, folder / "small.onnx"),
        "large": _export(large, folder / "large.onnx"),
        "regression": _export(regression, folder / "regression.onnx"),
        "narrow": _export(narrow, folder / "narrow.onnx", features=32),
        "five": _export(torch.nn.Sequential(torch.nn.Linear(64, 5)), folder / "five.onnx"),
        "fixed": _export(small, folder / "fixed.onnx", dynamic=False),
        "x": eval_x,
        "y": eval_y,
    }


def _run(path: Path, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.fixture(scope="module")
def cascade_out(models):
    """One real run: the default rule (0.5 pt of the large model), OpenVINO IR beside the graph."""
    out = models["folder"] / "out"
    result = run_cli(
        "cascade",
        "--small",
        models["small"],
        "--large",
        models["large"],
        "--eval-data",
        models["folder"] / "eval.npz",
        "-o",
        out,
        "--target",
        "openvino",
        "--latency-seconds",
        "0.5",
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.explain()
    return out


@pytest.mark.parametrize("measure", ["max-prob", "margin", "entropy"])
def test_graph_rows_equal_the_models_run_separately(models, measure):
    """Threshold 0: the small model alone; above every confidence: the large alone; between: per row the right
    one; an empty batch runs too. The graph's escalation is the numpy confidence's."""
    import onnx

    from modelforge.cascade.confidence import confidence
    from modelforge.cascade.graph import build_cascade

    graph = build_cascade(
        onnx.load(models["small"]),
        onnx.load(models["large"]),
        measure=measure,
        small_probabilities=False,
        large_probabilities=False,
        threshold=0.5,
    )
    path = models["folder"] / f"graph-{measure}.onnx"
    onnx.save(graph, path)
    x = models["x"]
    small = _run(models["small"], {"x": x})[0]
    large = _run(models["large"], {"x": x})[0]
    conf = confidence(small, measure)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    distinct = np.unique(conf)
    middle = float((distinct[len(distinct) // 2] + distinct[len(distinct) // 2 + 1]) / 2)  # as the curve's
    for threshold in (0.0, middle, 1.5):
        out, escalated = session.run(None, {"x": x, "cascade_threshold": np.array(threshold, np.float32)})
        expected = conf < threshold
        np.testing.assert_array_equal(escalated, expected)
        np.testing.assert_array_equal(out, np.where(expected[:, None], large, small))
    assert 0.3 < (conf < middle).mean() < 0.7
    empty, flags = session.run(None, {"x": x[:0]})
    assert empty.shape == (0, 10) and flags.shape == (0,)


def test_cascade_run_meets_the_rule_and_records_everything(models, cascade_out):
    report = json.loads((cascade_out / "report.json").read_text())
    s, c = report["summary"], report["cascade"]
    assert report["passed"] and c["target_met"]
    assert s["accuracy_drop_pp"] <= 0.5 and s["accuracy_result"] > s["accuracy_small"] + 0.03
    assert 0 < s["escalated_share"] < 1
    assert c["check"]["escalation_mismatches"] == 0 and c["check"]["max_abs_diff"] == 0
    assert c["check"]["openvino"]["escalation_mismatches"] == 0
    assert c["check"]["openvino"]["max_abs_diff_vs_onnxruntime"] < 1e-3
    measured = {m["threshold"] for m in c["latency"]["cascade"]}
    assert s["threshold"] in measured and len(measured) >= 3
    assert s["speedup"] == pytest.approx(s["latency_mean_ms_baseline"] / s["latency_mean_ms_result"])
    names = {f["path"] for f in json.loads((cascade_out / "manifest.json").read_text())["files"]}
    assert {"model.onnx", "model.xml", "model.bin", "report.html", "report.md", "baseline_stats.json"} <= names
    html = (cascade_out / "report.html").read_text()
    assert 'data-chart="cascade-curve"' in html and 'data-series="chosen"' in html
    assert 'data-series="small model"' in html and 'data-series="large model"' in html
    from modelforge.report.html import render_html
    from modelforge.report.markdown import render_markdown

    assert render_html(report) == html  # `modelforge report OUT --format html` renders the same page
    assert render_markdown(report) == (cascade_out / "report.md").read_text()
    baseline = json.loads((cascade_out / "baseline_stats.json").read_text())
    assert baseline["escalation"]["share"] == pytest.approx(s["escalated_share"])

    import onnx

    model = onnx.load(cascade_out / "model.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    assert float(meta["modelforge.cascade.threshold"]) == s["threshold"]
    assert json.loads(meta["modelforge.cascade.curve"])[0]["escalated_share"] == 0


def test_an_earlier_output_folder_stands_for_its_model(cascade_out):
    from modelforge.run.cascade import model_path

    assert model_path(cascade_out, "small") == cascade_out / "model.onnx"


def test_threshold_input_moves_without_a_rebuild(models, cascade_out):
    x = models["x"]
    small = _run(models["small"], {"x": x})[0]
    large = _run(models["large"], {"x": x})[0]
    path = cascade_out / "model.onnx"
    _, default_flags = _run(path, {"x": x})
    share = json.loads((cascade_out / "report.json").read_text())["summary"]["escalated_share"]
    assert default_flags.mean() == pytest.approx(share)
    out, flags = _run(path, {"x": x, "cascade_threshold": np.array(0.0, np.float32)})
    assert not flags.any()
    np.testing.assert_array_equal(out, small)
    out, flags = _run(path, {"x": x, "cascade_threshold": np.array(1.5, np.float32)})
    assert flags.all()
    np.testing.assert_array_equal(out, large)


def test_openvino_ir_runs_unchanged(models, cascade_out):
    ov = pytest.importorskip("openvino")
    x = models["x"]
    compiled = ov.Core().compile_model(str(cascade_out / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({"x": x})
    expected, flags = _run(cascade_out / "model.onnx", {"x": x})
    np.testing.assert_array_equal(np.asarray(result[compiled.outputs[1]]), flags)
    np.testing.assert_allclose(np.asarray(result[compiled.outputs[0]]), expected, atol=1e-4)


def test_triton_export_of_the_cascade(models, cascade_out):
    out = models["folder"] / "triton"
    result = run_cli("export", cascade_out / "model.onnx", "--target", "triton", "-o", out, "--batch-sizes", "1,4")
    assert result.returncode == 0, result.explain()
    config = (out / "model_repository" / "model" / "config.pbtxt").read_text()
    assert '"escalated"' in config and "reshape: { shape: [ ] }" in config
    assert (out / "model_repository" / "model" / "1" / "model.onnx").is_file()


def test_drift_flags_a_rising_escalation_share(models, cascade_out):
    folder = models["folder"]
    same = run_cli("drift", cascade_out, folder / "eval.npz", "-o", folder / "same.json")
    assert same.returncode == 0, same.explain()
    escalation = json.loads((folder / "same.json").read_text())["escalation"]
    assert escalation["rise_pp"] == pytest.approx(0) and not escalation["significant"]
    shifted = run_cli("drift", cascade_out, folder / "shifted.npz", "-o", folder / "shifted.json", "--max-psi", "100")
    assert shifted.returncode == 1, shifted.explain()
    report = json.loads((folder / "shifted.json").read_text())
    assert report["escalation"]["significant"] and report["escalation"]["rise_pp"] > 5
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    assert failed == ["max_escalation_rise_pp"]
    assert "max_escalation_rise_pp" in shifted.stderr


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("narrow", "input 'x' differs: small [batch, 64] float, large [batch, 32] float"),
        ("regression", "small model: output 'logits' is [batch, 1], not class scores"),
        ("five", "the models' outputs differ: small 'logits' [batch, 10], large 'logits' [batch, 5]"),
        ("fixed", "small model: input 'x' [2, 64] has a fixed batch axis"),
        ("threshold", "--threshold 1.5: expected a value in (0, 1)"),
        ("unlabelled", "has no labels: --max-accuracy-drop needs them"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(models, case, expected):
    folder = models["folder"]
    small, large, data, extra = models["small"], models["large"], folder / "eval.npz", []
    if case == "narrow":
        large = models["narrow"]
    elif case == "regression":
        small = models["regression"]
    elif case == "five":
        large = models["five"]
    elif case == "fixed":
        small = models["fixed"]
    elif case == "threshold":
        extra = ["--threshold", "1.5"]
    else:
        data = folder / "unlabelled.npz"
    out = folder / f"bad-{case}" / "out"
    result = run_cli("cascade", "--small", small, "--large", large, "--eval-data", data, "-o", out, *extra)
    assert result.returncode == 2, result.explain()
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (folder / f"bad-{case}").exists()


def test_curve_is_exact_and_the_rules_choose_as_documented():
    """Every curve point equals the cascade evaluated directly at its threshold; the accuracy rule takes the
    fewest escalations within the drop; the latency rule the most accurate point under the limit."""
    from modelforge.cascade.curve import cascade_curve, choose_by_accuracy, choose_by_latency, point_at

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    conf = rng.uniform(0, 1, 300).astype(np.float32)
    large = np.where(rng.uniform(size=300) < 0.95, labels, (labels + 1) % 5)
    small = np.where(rng.uniform(size=300) < conf, labels, (labels + 2) % 5)  # unsure rows are wrong more often
    points = cascade_curve(conf, small, large, labels)
    assert points[0].escalated == 0 and points[-1].escalated == 300
    for p in points[:: max(1, len(points) // 25)]:
        assert point_at(conf, small, large, labels, p.threshold) == p
    large_acc = float((large == labels).mean())
    choice = choose_by_accuracy(points, large_acc, 1.0)
    assert choice.target_met and choice.point.accuracy >= large_acc - 0.01
    assert all(p.accuracy < large_acc - 0.01 for p in points if p.escalated < choice.point.escalated)
    timed = {p.threshold: 1.0 + 4.0 * p.escalated_share for p in points[::7]}  # 3 ms: at most 50% escalated
    by_latency = choose_by_latency(points, timed, 3.0)
    assert by_latency.target_met and by_latency.point.threshold in timed
    assert by_latency.point.accuracy == max(p.accuracy for p in points if timed.get(p.threshold, 9) <= 3.0)
    assert not choose_by_latency(points, {t: 2.0 for t in timed}, 1.0).target_met


def test_lower_opset_converted_and_mixed_scores_served_as_probabilities(models):
    """A small model at opset 13 beside a large one at 17 is converted; a large model ending in a softmax next
    to a small one giving logits: every row of the output is a probability distribution."""
    import onnx
    from onnx import helper, version_converter

    from modelforge.cascade.confidence import confidence, softmax
    from modelforge.cascade.graph import build_cascade, default_opset

    small = version_converter.convert_version(onnx.load(models["small"]), 13)
    large = onnx.load(models["large"])
    large.graph.node[-1].output[0] = "raw"
    large.graph.node.append(helper.make_node("Softmax", ["raw"], ["logits"], axis=-1))
    graph = build_cascade(
        small, large, measure="max-prob", small_probabilities=False, large_probabilities=True, threshold=0.5
    )
    assert default_opset(graph) == 17
    path = models["folder"] / "mixed.onnx"
    onnx.save(graph, path)
    x = models["x"]
    small_out = _run(models["small"], {"x": x})[0]
    large_probs = softmax(_run(models["large"], {"x": x})[0])
    out, escalated = _run(path, {"x": x})
    np.testing.assert_array_equal(escalated, confidence(small_out) < 0.5)
    assert 0 < escalated.mean() < 1
    np.testing.assert_allclose(out, np.where(escalated[:, None], large_probs, softmax(small_out)), atol=1e-5)
