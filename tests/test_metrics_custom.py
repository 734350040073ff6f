"""Top-5 accuracy, top-1 confidence and custom `module:function` metrics, on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from modelforge.errors import InputError
from modelforge.evaluate.custom import compute_custom_metrics, load_metric, mean_kl_divergence
from modelforge.measure.metrics import ComparisonAccumulator, top1_confidence
from modelforge.recipe.load import recipe_from_dict


def test_top5_accuracy_counts_labels_in_the_five_best_classes():
    scores = np.tile(np.arange(10, dtype=np.float32), (4, 1))  # classes 9, 8, 7, 6, 5 are the top five
    labels = np.array([9, 5, 4, 0])
    acc = ComparisonAccumulator()
    acc.update([scores], [scores[:, ::-1].copy()], labels)  # result ranks 0..4 on top
    summary = acc.summary(has_labels=True)
    assert summary["top5_accuracy_baseline"] == pytest.approx(2 / 4)  # 9 and 5
    assert summary["top5_accuracy_result"] == pytest.approx(2 / 4)  # 4 and 0
    assert summary["accuracy_baseline"] == pytest.approx(1 / 4)


def test_top5_needs_labels_and_more_than_five_classes():
    few = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    acc = ComparisonAccumulator()
    acc.update([few], [few], np.zeros(6, dtype=np.int64))
    assert acc.summary(has_labels=True)["top5_accuracy_result"] is None
    acc = ComparisonAccumulator()
    acc.update([np.eye(8)], [np.eye(8)], None)
    assert acc.summary(has_labels=False)["top5_accuracy_result"] is None


def test_confidence_is_the_softmax_top1_probability_of_logits():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    confidence, softmaxed = top1_confidence(logits)
    assert softmaxed
    assert confidence == pytest.approx([np.exp(2) / (np.exp(2) + 2), 1 / 3])


def test_probabilities_are_taken_as_they_are():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    confidence, softmaxed = top1_confidence(probs)
    assert not softmaxed
    assert confidence == pytest.approx([0.7, 0.8])


def test_confidence_summary_shows_a_drop():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 10)) * 4
    acc = ComparisonAccumulator()
    acc.update([logits], [logits * 0.5], rng.integers(0, 10, 200))  # flatter logits: less confident
    summary = acc.summary(has_labels=True)
    base, result = summary["confidence_baseline"], summary["confidence_result"]
    assert set(base) == {"mean", "p5", "p25", "p50", "p75", "p95"}
    assert result["mean"] < base["mean"]
    assert base["p5"] <= base["p50"] <= base["p95"]
    assert summary["confidence_source"] == "softmax of the outputs"
    assert summary["top1_agreement"] == 1.0  # same ranking: agreement hides what confidence shows


@pytest.fixture
def metric_module(tmp_path, monkeypatch):
    (tmp_path / "my_metrics.py").write_text(
        "import numpy as np\n"
        "def mean_abs(baseline, result, labels):\n"
        "    return float(np.mean(np.abs(baseline[0] - result[0])))\n"
        "def several(baseline, result, labels):\n"
        "    return {'n': len(baseline[0]), 'has_labels': float(labels is not None)}\n"
        "def broken(baseline, result, labels):\n"
        "    raise ValueError('boom')\n"
        "def wrong_type(baseline, result, labels):\n"
        "    return 'text'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_metrics"


def test_custom_metrics_get_the_whole_eval_set(metric_module):
    batches_a = [[np.ones((2, 3))], [np.ones((1, 3))]]
    batches_b = [[np.zeros((2, 3))], [np.zeros((1, 3))]]
    values = compute_custom_metrics(
        [f"{metric_module}:mean_abs", f"{metric_module}:several"], batches_a, batches_b, np.array([0, 1, 2])
    )
    assert values == {f"{metric_module}:mean_abs": 1.0, f"{metric_module}:several": {"n": 3.0, "has_labels": 1.0}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:f", "cannot import module"),
        ("my_metrics:missing", "has no function 'missing'"),
        ("my_metrics:broken", "raised ValueError: boom"),
        ("my_metrics:wrong_type", "returned str"),
    ],
)
def test_custom_metric_errors_are_input_errors(metric_module, spec, message):
    with pytest.raises(InputError, match=message):
        compute_custom_metrics([spec], [[np.ones((1, 2))]], [[np.ones((1, 2))]], None)


def test_recipe_checks_the_metric_spec_form():
    base = {"model": "m.onnx", "evaluate": {"custom_metrics": ["not a spec"]}}
    with pytest.raises(InputError, match=r"evaluate\.custom_metrics.*module:function"):
        recipe_from_dict(base)
    ok = recipe_from_dict({"model": "m.onnx", "evaluate": {"custom_metrics": ["pkg.mod:fn"]}})
    assert ok.evaluate.custom_metrics == ["pkg.mod:fn"]


def test_recipe_slo_needs_a_limit():
    with pytest.raises(InputError, match="latency_p99_ms or latency_p50_ms"):
        recipe_from_dict({"model": "m.onnx", "evaluate": {"slo": {"batch_size": 8}}})
    recipe = recipe_from_dict(
        {"model": "m.onnx", "evaluate": {"slo": {"latency_p99_ms": 200, "batch_size": 8}, "latency": {}}}
    )
    assert recipe.evaluate.slo.gate is True
    assert recipe.evaluate.latency.batch_sizes == []


def test_builtin_kl_divergence_is_zero_for_identical_outputs():
    logits = np.random.default_rng(1).standard_normal((5, 10))
    assert mean_kl_divergence([logits], [logits], None) == pytest.approx(0.0, abs=1e-12)
    assert mean_kl_divergence([logits], [logits * 0.5], None) > 0
    assert callable(load_metric("modelforge.evaluate.custom:mean_kl_divergence"))
