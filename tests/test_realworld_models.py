"""The builders of tests/realworld_models.py write what they promise: valid models of issue 8's four graph classes
that onnxruntime (or torch, for the .pt2) runs, with the structure that makes each class what it is, and data
files keyed by the model's inputs. Quantization results are tested in test_realworld_quantize.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import realworld_models as rw

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def session(path: Path, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if optimized is not None:  # what onnxruntime's graph optimizer (basic level, as quant_pre_process) makes of it
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def input_names(model: onnx.ModelProto) -> set[str]:
    initializers = {t.name for t in model.graph.initializer}
    return {i.name for i in model.graph.input if i.name not in initializers}


def check_data(built: rw.Built, names: set[str], labels: bool) -> tuple[dict, dict]:
    calibration, evaluation = load_npz(built.calibration), load_npz(built.eval)
    assert set(calibration) == names
    assert set(evaluation) == names | ({"labels"} if labels else set())
    if labels:
        assert evaluation["labels"].dtype == np.int64 and evaluation["labels"].ndim == 1
        assert len(evaluation["labels"]) == len(evaluation[next(iter(names))])
    return calibration, evaluation


def opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_ctc_greedy_decode_collapses_repeats_and_drops_blanks():
    blank = rw.CRNN_BLANK
    steps = [3, 3, blank, 3, 7, 7, blank, blank, 1]
    scores = np.full((1, len(steps), rw.CRNN_CLASSES), -5.0, dtype=np.float32)
    scores[0, np.arange(len(steps)), steps] = 0.0
    assert rw.ctc_greedy_decode(scores) == [[3, 3, 7, 1]]
    assert rw.ctc_greedy_decode(scores.transpose(1, 0, 2), time_major=True) == [[3, 3, 7, 1]]
    assert rw.sequence_accuracy(scores, np.array([[3, 3, 7, 1, -1]])) == 1.0
    assert rw.sequence_accuracy(scores, np.array([[3, 7, 1, -1, -1]])) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("version", [11, 12])
def test_constant_weight_cnn_at_opset_11_and_12(tmp_path, version):
    built = rw.opset11_constant_cnn(tmp_path, opset=version)
    model = onnx.load(str(built.model))
    onnx.checker.check_model(model, full_check=True)
    assert opset(model) == version
    assert not model.graph.initializer, "every weight is a Constant node, as PaddlePaddle writes them"
    constants = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") >= 4 and ops.count("BatchNormalization") == ops.count("Conv")
    assert {"Relu", "Add", "GlobalAveragePool", "Gemm"} <= set(ops)
    for node in model.graph.node:
        if node.op_type in ("Conv", "BatchNormalization", "Gemm"):
            assert all(name in constants for name in node.input[1:]), node.name
    [image] = model.graph.input
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["batch", 3, 32, 32]

    _, evaluation = check_data(built, {"image"}, labels=True)
    logits = session(built.model).run(None, {"image": evaluation["image"]})[0]
    assert logits.shape == (len(evaluation["labels"]), 10)
    accuracy = float((logits.argmax(1) == evaluation["labels"]).mean())
    assert accuracy == pytest.approx(built.float_accuracy) and accuracy > 0.9  # trained: accuracy means something
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"cnn_opset{version}{suffix}" for suffix in (".onnx", ".calibration.npz", ".eval.npz")
    )


def test_paddle_style_detector_structure(tmp_path):
    """Issue 19's detector class: opset 12, weights in Constant nodes, depthwise convolutions, HardSigmoid,
    nearest Resize, Concat, ConvTranspose; a probability map at the input's resolution."""
    built = rw.paddle_style_detector(tmp_path, size=64, samples=4)
    model = onnx.load(str(built.model))
    onnx.checker.check_model(model, full_check=True)
    assert opset(model) == 12 and model.producer_name == "PaddlePaddle"
    assert not model.graph.initializer, "every weight is a Constant node, as PaddlePaddle writes them"
    ops = [n.op_type for n in model.graph.node]
    assert {"HardSigmoid", "Resize", "Concat", "ConvTranspose", "Sigmoid"} <= set(ops)
    depthwise = [
        n for n in model.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    assert len(depthwise) == 4 and ops.count("Conv") >= 20
    [image] = model.graph.input
    assert [d.dim_value for d in image.type.tensor_type.shape.dim] == [1, 3, 64, 64]

    calibration, evaluation = check_data(built, {"image"}, labels=False)
    assert calibration["image"].shape == (4, 3, 64, 64)
    maps = session(built.model).run(None, {"image": evaluation["image"][:1]})[0]
    assert maps.shape == (1, 1, 64, 64) and ((maps > 0) & (maps < 1)).all()
    assert maps.std() > 1e-3  # not a constant map


@pytest.mark.slow
def test_jax_style_classifier_structure_and_the_gemm_onnxruntime_makes_of_it(tmp_path):
    built = rw.jax_style_classifier(tmp_path)
    model = onnx.load(str(built.model))
    onnx.checker.check_model(model, full_check=True)
    assert opset(model) == 15
    [data] = model.graph.input
    assert data.type.tensor_type.elem_type == onnx.TensorProto.INT32
    ops = [n.op_type for n in model.graph.node]
    for op, count in {
        "Equal": 1,
        "Cast": 1,
        "MatMul": 2,
        "Transpose": 2,
        "Conv": 1,
        "ReduceMean": 3,
        "Sqrt": 1,
    }.items():
        assert ops.count(op) == count, op
    assert ops[-1] == "Softmax"
    producers = {o: n for n in model.graph.node for o in n.output}
    [conv] = [n for n in model.graph.node if n.op_type == "Conv"]
    assert producers[conv.input[0]].op_type == "Transpose"  # NHWC -> NCHW in front of the convolution
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    head_add = producers[producers[model.graph.output[0].name].input[0]]
    assert head_add.op_type == "Add" and shapes[head_add.input[1]] == [1, len(rw.FILE_TYPES)]

    _, evaluation = check_data(built, {"bytes"}, labels=True)
    assert evaluation["bytes"].dtype == np.int32 and evaluation["bytes"].shape[1] == rw.BYTES
    probabilities = session(built.model).run(None, {"bytes": evaluation["bytes"]})[0]
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
    accuracy = float((probabilities.argmax(1) == evaluation["labels"]).mean())
    assert accuracy == pytest.approx(built.float_accuracy) and accuracy > 0.9

    # The quantizer's trigger: onnxruntime's basic optimizations fuse the head MatMul + Add into a Gemm whose
    # bias C keeps its [1, C] shape (the 1-D-bias variant gives C of shape [C]).
    optimized = tmp_path / "optimized.onnx"
    session(built.model, optimized)
    fused = onnx.load(str(optimized))
    shapes = {t.name: list(t.dims) for t in fused.graph.initializer}
    [gemm] = [n for n in fused.graph.node if n.op_type == "Gemm"]
    assert shapes[gemm.input[2]] == [1, len(rw.FILE_TYPES)]


@pytest.mark.slow
def test_mobilenetv3_small_style(tmp_path):
    built = rw.mobilenetv3_small_style(tmp_path)
    model = onnx.load(str(built.model))
    onnx.checker.check_model(model, full_check=True)
    assert opset(model) == 17
    [image] = model.graph.input
    assert [d.dim_value for d in image.type.tensor_type.shape.dim] == [1, 3, 224, 224]
    ops = [n.op_type for n in model.graph.node]
    assert {"HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Add", "Gemm"} <= set(ops)
    depthwise = [
        n for n in model.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    assert len(depthwise) == len(rw.MOBILENET_V3_SMALL)
    assert 1_000_000 < built.info["parameters"] < 3_000_000

    calibration, evaluation = check_data(built, {"image"}, labels=False)
    assert calibration["image"].shape == (32, 3, 224, 224)
    run = session(built.model)
    logits = np.concatenate([run.run(None, {"image": evaluation["image"][i : i + 1]})[0] for i in range(8)])
    assert np.isfinite(logits).all() and logits.std(1).min() > 0.1  # activations are not degenerate
    assert len(set(logits.argmax(1).tolist())) > 1


@pytest.mark.slow
def test_crnn_pt2_loads_runs_and_reads(tmp_path):
    import torch

    built = rw.crnn_pt2(tmp_path)
    assert built.model.suffix == ".pt2" and built.targets is not None
    program = torch.export.load(str(built.model))
    assert any("lstm" in str(node.target) for node in program.graph.nodes), "the BiLSTMs are in the program"
    [user_input] = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    assert user_input == "image"

    _, evaluation = check_data(built, {"image"}, labels=False)
    assert evaluation["image"].shape[1:] == (1, rw.CRNN_HEIGHT, rw.CRNN_WIDTH)
    with torch.no_grad():
        log_probs = program.module()(torch.from_numpy(evaluation["image"])).numpy()
        single = program.module()(torch.from_numpy(evaluation["image"][:3])).numpy()  # the batch is dynamic
    assert log_probs.shape == (len(evaluation["image"]), rw.CRNN_WIDTH // 4, rw.CRNN_CLASSES)
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(single, log_probs[:3], atol=1e-4)
    targets = rw.load_targets(built.targets)
    accuracy = rw.sequence_accuracy(log_probs, targets)
    assert accuracy == pytest.approx(built.float_accuracy, abs=0.01) and accuracy > 0.85
