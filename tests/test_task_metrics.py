"""Metrics by task: macro F1, token accuracy and token F1, pair-similarity Spearman; checked against
scikit-learn and scipy on known arrays, and end to end through the evaluator and the CLI on small real ONNX
models (a token tagger [N, L, C], a sentence embedder [N, D]) with the gates' exit codes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from conftest import DIGITS_CALIBRATION, DIGITS_MODEL, load_report, run_cli
from onnx import TensorProto, helper, numpy_helper, save
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import accuracy_score, f1_score

from modelforge.data import bind
from modelforge.data.sources import NpzDataset
from modelforge.evaluate.evaluator import evaluate_pair
from modelforge.measure.metrics import (
    IGNORED_TOKEN,
    ComparisonAccumulator,
    add_confusion,
    average_ranks,
    macro_f1,
    spearman,
)
from modelforge.measure.task_metrics import PairSimilarity, metric_task, no_entity_tags, sentence_embedding
from modelforge.model.loader import load_model
from modelforge.progress import Progress
from modelforge.recipe.schema import EvaluateConfig


def test_macro_f1_matches_scikit_learn_over_classes_in_labels_or_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)  # class 5 only predicted, class 4 in neither: left out
    predicted = np.where(rng.random(300) < 0.7, labels, rng.choice([0, 1, 5], 300))
    confusion = add_confusion(None, labels[:100], predicted[:100], classes=3)  # grows to 6 classes
    confusion = add_confusion(confusion, labels[100:], predicted[100:], classes=3)
    assert confusion.shape == (6, 6) and confusion.sum() == 300
    assert macro_f1(confusion) == pytest.approx(f1_score(labels, predicted, average="macro"))
    kept = [0, 2, 3, 5]  # without class 1
    assert macro_f1(confusion, exclude=(1,)) == pytest.approx(f1_score(labels, predicted, labels=kept, average="macro"))
    assert macro_f1(None) is None
    assert macro_f1(add_confusion(None, np.array([0]), np.array([0]), 1), exclude=(0,)) is None


def test_spearman_ranks_ties_by_their_average_like_scipy():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0])
    y = np.array([2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0, 2.0, 8.0])
    assert average_ranks(x) == pytest.approx(rankdata(x))
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, np.ones_like(x)) is None  # a constant side has no rank order
    assert spearman(x[:1], y[:1]) is None
    assert spearman(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0])) is None


def token_batch(seed: int = 0, n: int = 12, length: int = 7, classes: int = 4):
    rng = np.random.default_rng(seed)
    logits_a = rng.standard_normal((n, length, classes))
    logits_b = logits_a + rng.standard_normal((n, length, classes)) * 0.8
    labels = np.where(rng.random((n, length)) < 0.8, logits_a.argmax(axis=2), rng.integers(0, classes, (n, length)))
    labels[:, -2:] = IGNORED_TOKEN  # padding
    labels[rng.random((n, length)) < 0.1] = IGNORED_TOKEN  # later sub-tokens
    return logits_a, logits_b, labels


def test_token_metrics_skip_ignored_positions_and_leave_o_out_of_the_f1():
    logits_a, logits_b, labels = token_batch()
    acc = ComparisonAccumulator(token_f1_exclude=(0,))
    for part in (slice(0, 5), slice(5, None)):  # two batches: counts accumulate
        acc.update([logits_a[part]], [logits_b[part]], labels[part])
    summary = acc.summary(has_labels=True)
    kept = labels != IGNORED_TOKEN
    truth, pred_a, pred_b = labels[kept], logits_a.argmax(2)[kept], logits_b.argmax(2)[kept]
    assert summary["accuracy_kind"] == "token" and summary["tokens"] == kept.sum()
    assert summary["accuracy_baseline"] == pytest.approx(accuracy_score(truth, pred_a))
    assert summary["accuracy_result"] == pytest.approx(accuracy_score(truth, pred_b))
    entities = [1, 2, 3]
    assert summary["token_f1_baseline"] == pytest.approx(f1_score(truth, pred_a, labels=entities, average="macro"))
    assert summary["token_f1_result"] == pytest.approx(f1_score(truth, pred_b, labels=entities, average="macro"))
    assert summary["token_agreement"] == pytest.approx(np.mean(pred_a == pred_b))
    assert summary["macro_f1_result"] is None and summary["top1_agreement"] is None


def test_classifier_outputs_get_macro_f1_beside_accuracy():
    rng = np.random.default_rng(1)
    scores_a = rng.standard_normal((50, 3))
    scores_b = scores_a + rng.standard_normal((50, 3))
    labels = rng.integers(0, 3, 50)
    acc = ComparisonAccumulator()
    acc.update([scores_a], [scores_b], labels)
    summary = acc.summary(has_labels=True)
    assert summary["accuracy_kind"] == "top-1" and summary["token_f1_result"] is None
    assert summary["macro_f1_baseline"] == pytest.approx(f1_score(labels, scores_a.argmax(1), average="macro"))
    assert summary["macro_f1_result"] == pytest.approx(f1_score(labels, scores_b.argmax(1), average="macro"))
    unlabelled = ComparisonAccumulator()
    unlabelled.update([scores_a], [scores_b], None)
    assert unlabelled.summary(has_labels=False)["macro_f1_result"] is None


def test_the_task_comes_from_the_model_else_from_the_labels_shape():
    assert metric_task("feature-extraction", None) == "feature-extraction"
    assert metric_task(None, np.zeros((3, 5), dtype=np.int64)) == "token-classification"
    assert metric_task(None, np.zeros(3, dtype=np.int64)) == "classification"
    assert metric_task(None, None) is None  # no labels, no config: the output comparison alone
    assert no_entity_tags({0: "O", 1: "B-PER", 2: "I-PER"}) == (0,)
    assert no_entity_tags({0: "sports", 1: "food"}) == () and no_entity_tags(None) == ()


def test_sentence_embedding_mean_pools_hidden_states_over_the_mask():
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    pooled = sentence_embedding([hidden], {"attention_mask": mask})
    assert pooled == pytest.approx(np.array([[1.0, 2.0], [6.0, 7.0]]))
    pooler = np.ones((2, 4), dtype=np.float32)
    assert sentence_embedding([hidden, pooler], {}) is not None
    assert sentence_embedding([hidden, pooler], {}).shape == (2, 4)  # a pooled [N, D] output is the embedding


def test_pair_similarity_needs_every_pair():
    pairs = PairSimilarity(3)
    pairs.update(np.ones((4, 2)), np.ones((4, 2)))
    assert pairs.summary() == {}  # 4 of 6 samples: no pair metric rather than a wrong one


# --- end to end: real ONNX models, the evaluator and the CLI ---------------------------------------------------


def matmul_model(path, weights: np.ndarray, input_shape: list, output_shape: list) -> None:
    """y = x @ W: a tagger ([N, L, F] -> [N, L, C]) or an embedder ([N, F] -> [N, D])."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "matmul", [x], [y], [numpy_helper.from_array(weights.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


LENGTH, FEATURES = 6, 8


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """A token tagger whose tags 0 and 1 tie but for one feature with a weight far below INT8's step: the float
    model picks tag 1 wherever that feature is +1, the INT8 one rounds the weight to 0 and picks tag 0 (the
    first of two equal scores), so quantizing costs a known, large share of token accuracy."""
    folder = tmp_path_factory.mktemp("tagger")
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((FEATURES, 3))
    weights[:, 1] = weights[:, 0]
    weights[-1, :] = [0.0, 1e-3, 0.0]
    x = rng.standard_normal((60, LENGTH, FEATURES)).astype(np.float32)
    x[:, :, -1] = rng.choice([-1.0, 1.0], (60, LENGTH))
    matmul_model(folder / "model.onnx", weights, ["batch", LENGTH, FEATURES], ["batch", LENGTH, 3])
    labels = run_onnx(folder / "model.onnx", x).argmax(axis=2)
    labels[rng.random(labels.shape) < 0.1] = 2  # a few tags the float model gets wrong
    labels[:, -1] = IGNORED_TOKEN
    np.savez(folder / "calibration.npz", x=x[:20])
    np.savez(folder / "eval.npz", x=x[20:], labels=labels[20:])
    return folder, x[20:], labels[20:]


def quantize_recipe(folder, out, gates, fallback: bool = False) -> str:
    recipe = {
        "model": str(folder / "model.onnx"),
        "data": {"calibration": str(folder / "calibration.npz"), "eval_data": str(folder / "eval.npz")},
        "passes": [{"name": "quantize", "config": {"speed_aware": False, "fallback": fallback}}],
        "evaluate": {"skip_latency": True},
        "gates": {"default_gates": False, **gates},
        "output": str(out),
        "cache": False,
    }
    path = out.parent / f"{out.name}.yaml"  # beside the output; the model and data are allowed by flag
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.mark.slow
def test_token_classification_metrics_and_the_accuracy_gate_through_the_cli(tagger, tmp_path):
    folder, x, labels = tagger
    out = tmp_path / "int8"
    result = run_cli("run", quantize_recipe(folder, out, {"max_accuracy_drop": 5.0}), "-q", "--allow-paths", folder)
    assert result.returncode == 1, result.explain()  # the gate fails on token accuracy
    report = load_report(out)
    summary, metrics = report["summary"], report["evaluation"]["metrics"]
    kept = labels != IGNORED_TOKEN
    truth = labels[kept]
    pred_a = run_onnx(folder / "model.onnx", x).argmax(axis=2)[kept]
    pred_b = run_onnx(out / "model.onnx", x).argmax(axis=2)[kept]
    assert metrics["task"] == "token-classification" and metrics["tokens"] == kept.sum()
    assert summary["accuracy_baseline"] == pytest.approx(accuracy_score(truth, pred_a))
    assert summary["accuracy_result"] == pytest.approx(accuracy_score(truth, pred_b))
    assert summary["token_f1_baseline"] == pytest.approx(f1_score(truth, pred_a, average="macro"))
    assert summary["token_f1_result"] == pytest.approx(f1_score(truth, pred_b, average="macro"))
    assert "macro_f1_result" not in summary and "pair_spearman_vs_original" not in summary
    (gate,) = report["gates"]
    assert gate["name"] == "max_accuracy_drop" and not gate["passed"]
    assert gate["value"] == pytest.approx((accuracy_score(truth, pred_a) - accuracy_score(truth, pred_b)) * 100)
    assert gate["value"] > 5  # the INT8 model lost the tag-1 tokens
    markdown = (out / "report.md").read_text()
    assert "| Token accuracy |" in markdown and "| Token F1 (macro) |" in markdown
    assert "Top-1 accuracy" not in markdown.split("## ")[1]  # the summary says which accuracy it is
    assert 'data-metric="token_f1_result"' in (out / "report.html").read_text()

    loose = tmp_path / "loose"
    passed = run_cli("run", quantize_recipe(folder, loose, {"max_accuracy_drop": 100.0}), "--allow-paths", folder)
    assert passed.returncode == 0, passed.explain()
    assert "Token F1 (macro)" in passed.stdout  # the terminal table shows the measured task metrics


@pytest.mark.slow
def test_the_quantize_fallback_aims_at_token_accuracy(tagger, tmp_path):
    """The same gate with the fallback on: it measures token accuracy as the verdict does, and keeps the tagger's
    MatMul in float until the gate is met."""
    folder, _, _ = tagger
    out = tmp_path / "fallback"
    recipe = quantize_recipe(folder, out, {"max_accuracy_drop": 5.0}, fallback=True)
    result = run_cli("run", recipe, "-q", "--allow-paths", folder)
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    assert report["summary"]["accuracy_drop_pp"] <= 5.0 and report["gates"][0]["passed"]
    assert report["summary"]["token_f1_result"] is not None
    fallback = report["stages"][0]["metrics"]["fallback"]
    assert fallback["metrics_all_quantized"]["accuracy_drop_pp"] > 5.0  # token accuracy, measured by the search
    assert fallback["met"] and fallback["float_nodes"]


def test_token_labels_for_a_classifier_output_are_refused_before_any_work(tmp_path):
    x = np.load(DIGITS_MODEL.parent / "eval.npz")
    inputs = {k: x[k] for k in x.files if k != "labels"}
    n = len(next(iter(inputs.values())))
    np.savez(tmp_path / "eval.npz", **inputs, labels=np.zeros((n, 4), dtype=np.int64))
    out = tmp_path / "out"
    result = run_cli("quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-e", tmp_path / "eval.npz", "-o", out)
    assert result.returncode == 2, result.explain()
    assert "token tags" in result.stderr and "[N, 4, classes]" in result.stderr
    assert not out.exists()


class PairData(NpzDataset):
    """The layout the text data gives sentence pairs: A texts, then B texts, and gold scores per pair."""

    def __init__(self, path, pair_count: int, scores: np.ndarray | None):
        super().__init__(path)
        self.pair_count = pair_count
        self._scores = scores

    def pair_scores(self) -> np.ndarray | None:
        return self._scores


def test_pair_spearman_against_the_original_and_the_gold_scores(tmp_path):
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((FEATURES, 5))
    matmul_model(tmp_path / "a.onnx", weights, ["batch", FEATURES], ["batch", 5])
    matmul_model(
        tmp_path / "b.onnx", weights + rng.standard_normal(weights.shape) * 0.3, ["batch", FEATURES], ["batch", 5]
    )
    pairs = 40
    x = rng.standard_normal((2 * pairs, FEATURES)).astype(np.float32)
    gold = rng.integers(0, 6, pairs).astype(np.float64)  # STS-style 0..5 scores, with ties
    np.savez(tmp_path / "pairs.npz", x=x)
    baseline, result = load_model(tmp_path / "a.onnx"), load_model(tmp_path / "b.onnx")
    data = bind(PairData(tmp_path / "pairs.npz", pairs, gold), baseline.io)
    config = EvaluateConfig(skip_latency=True)
    record = evaluate_pair(baseline, result, data, "pairs", config, Progress())
    metrics = record["metrics"]

    def similarities(path):
        emb = run_onnx(path, x).astype(np.float64)
        a, b = emb[:pairs], emb[pairs:]
        return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    sim_a, sim_b = similarities(tmp_path / "a.onnx"), similarities(tmp_path / "b.onnx")
    assert metrics["pairs"] == pairs
    assert metrics["pair_spearman_vs_original"] == pytest.approx(spearmanr(sim_a, sim_b).statistic)
    assert metrics["pair_spearman_baseline"] == pytest.approx(spearmanr(sim_a, gold).statistic)
    assert metrics["pair_spearman_result"] == pytest.approx(spearmanr(sim_b, gold).statistic)
    assert 0 < metrics["pair_spearman_vs_original"] < 1

    no_gold = bind(PairData(tmp_path / "pairs.npz", pairs, None), baseline.io)
    metrics = evaluate_pair(baseline, result, no_gold, "pairs", EvaluateConfig(skip_latency=True), Progress())[
        "metrics"
    ]
    assert metrics["pair_spearman_baseline"] is None and metrics["pair_spearman_vs_original"] is not None


def test_training_passes_on_a_token_tagger_with_tags_get_the_accuracy_gate():
    from modelforge.model.artifact import IOSpec, TensorSpec
    from modelforge.recipe.schema import GatesConfig
    from modelforge.run.gates import resolve_gates

    io = IOSpec((TensorSpec("x", "float32", ("N", 6, 8)),), (TensorSpec("y", "float32", ("N", 6, 3)),))
    tagged = resolve_gates(GatesConfig(), io, ["distill"], True, token_labels=True)
    assert tagged.defaults == {"max_accuracy_drop"} and tagged.config.max_accuracy_drop == 5.0
    assert resolve_gates(GatesConfig(), io, ["distill"], True).defaults == {"min_cosine"}  # [N] labels: no accuracy
    assert resolve_gates(GatesConfig(), io, ["quantize"], True, token_labels=True).defaults == {"min_cosine"}


def test_the_pair_spearman_gate_reads_the_summary_and_needs_pairs(tmp_path):
    from modelforge.errors import InputError
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.recipe.schema import GatesConfig
    from modelforge.run.gates import check_gates_measurable, evaluate_gates

    gates = GatesConfig(min_pair_spearman=0.9)
    (low,) = evaluate_gates(gates, {"pair_spearman_vs_original": 0.85})
    (high,) = evaluate_gates(gates, {"pair_spearman_vs_original": 0.95})
    (missing,) = evaluate_gates(gates, {})
    assert low["metric"] == "pair_spearman_vs_original"
    assert [low["passed"], high["passed"], missing["passed"]] == [False, True, False]

    matmul_model(tmp_path / "m.onnx", np.ones((FEATURES, 4)), ["batch", FEATURES], ["batch", 4])
    np.savez(tmp_path / "x.npz", x=np.ones((4, FEATURES), dtype=np.float32))
    io = load_model(tmp_path / "m.onnx").io
    recipe = recipe_from_dict({"model": str(tmp_path / "m.onnx"), "passes": [], "gates": {"min_pair_spearman": 0.9}})
    with pytest.raises(InputError, match="min_pair_spearman needs eval data with sentence pairs"):
        check_gates_measurable(recipe, bind(NpzDataset(tmp_path / "x.npz"), io))
    check_gates_measurable(recipe, bind(PairData(tmp_path / "x.npz", 2, None), io))  # 2 pairs: measurable


def test_a_hugging_face_tagger_leaves_its_o_tag_out_of_the_token_f1(tagger, tmp_path):
    """The task and the tag names come from the model's config (`artifact.huggingface`, set by the loader for
    a Hugging Face folder): "O" counts in token accuracy, not in the token F1."""
    from types import SimpleNamespace

    folder, x, labels = tagger
    rng = np.random.default_rng(5)
    noisy = rng.standard_normal((FEATURES, 3))
    matmul_model(tmp_path / "b.onnx", noisy, ["batch", LENGTH, FEATURES], ["batch", LENGTH, 3])
    baseline, result = load_model(folder / "model.onnx"), load_model(tmp_path / "b.onnx")
    baseline.huggingface = SimpleNamespace(task="token-classification", id2label={0: "O", 1: "B-X", 2: "I-X"})
    data = bind(NpzDataset(folder / "eval.npz"), baseline.io)
    metrics = evaluate_pair(baseline, result, data, "eval", EvaluateConfig(skip_latency=True), Progress())["metrics"]
    kept = labels != IGNORED_TOKEN
    truth = labels[kept]
    pred_a = run_onnx(folder / "model.onnx", x).argmax(axis=2)[kept]
    pred_b = run_onnx(tmp_path / "b.onnx", x).argmax(axis=2)[kept]
    assert metrics["task"] == "token-classification"
    assert metrics["accuracy_result"] == pytest.approx(accuracy_score(truth, pred_b))  # "O" counted
    assert metrics["token_f1_baseline"] == pytest.approx(f1_score(truth, pred_a, labels=[1, 2], average="macro"))
    assert metrics["token_f1_result"] == pytest.approx(f1_score(truth, pred_b, labels=[1, 2], average="macro"))
