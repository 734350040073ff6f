"""Issue 19 section 2: decomposed LayerNorms/RMSNorms are found by dataflow in every form converters write
(test models: tests/realworld_models.py `norm_form_model`, `einsum_classifier_graph`), are kept in float by
static schemes, and dense `Einsum` layers become MatMul with the same outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import realworld_models as rw
from onnx import TensorProto, helper, numpy_helper

from modelforge.quantization.families import decomposed_norms, detect_family, norm_nodes
from modelforge.quantization.graph_fixes import einsum_to_matmul
from modelforge.quantization.schemes import Scheme, nodes_outside_scheme


def run(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("opset", [12, 13, 17])
@pytest.mark.parametrize("form", rw.NORM_FORMS)
def test_each_form_is_found_exactly(form, opset, affine, shuffle):
    model, expected = rw.norm_form_model(form, opset, affine, shuffle)
    [match] = decomposed_norms(model)  # the energy output's sum of squares is not a normalisation
    assert sorted(match.nodes) == sorted(expected)
    assert match.kind == ("rmsnorm" if form.startswith("rms") else "layernorm")
    assert match.input == "h"
    family = detect_family(model)
    assert family.family == "transformer" and family.counts["layer_norm"] == 1


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("form", rw.NORM_FORMS)
def test_the_test_models_compute_the_norm_they_claim(form, affine):
    model, _ = rw.norm_form_model(form, 13, affine, shuffle=True)
    model = rw.topologically_sorted(model)
    onnx.checker.check_model(model, full_check=True)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = np.random.default_rng(1).normal(size=(3, 8, rw.NORM_WIDTH)).astype(np.float32)
    y, energy = run(model, {"x": x})
    h = x @ weights["w_in"]
    if form.startswith("rms"):
        normed = h / np.sqrt((h * h).mean(-1, keepdims=True) + 1e-5)
        normed = normed * weights["gamma"] if affine else normed
    else:
        centred = h - h.mean(-1, keepdims=True)
        normed = centred / np.sqrt((centred * centred).mean(-1, keepdims=True) + 1e-5)
        normed = normed * weights["gamma"] + weights["beta"] if affine else normed
    np.testing.assert_allclose(y, (normed + h) @ weights["w_out"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(energy, (h * h).sum(-1, keepdims=True), rtol=1e-5)


def test_byte_classifier_graph_has_three_moments_layernorms_and_einsum_dense_layers():
    rng = np.random.default_rng(0)
    shapes = {
        "embed": (256, rw.EINSUM_EMBED),
        "embed_bias": (rw.EINSUM_EMBED,),
        "conv_w": (rw.EINSUM_WIDTH, rw.EINSUM_EMBED, 1, rw.EINSUM_KERNEL),
        "conv_b": (rw.EINSUM_WIDTH,),
        "head_w": (rw.EINSUM_WIDTH, len(rw.FILE_TYPES)),
        "head_b": (len(rw.FILE_TYPES),),
    }
    for i in range(3):
        shapes[f"gamma{i}"] = shapes[f"beta{i}"] = (rw.EINSUM_WIDTH,)
    for i in range(rw.EINSUM_BLOCKS):
        shapes[f"up{i}_w"], shapes[f"up{i}_b"] = (rw.EINSUM_WIDTH, rw.EINSUM_HIDDEN), (rw.EINSUM_HIDDEN,)
        shapes[f"down{i}_w"], shapes[f"down{i}_b"] = (rw.EINSUM_HIDDEN, rw.EINSUM_WIDTH), (rw.EINSUM_WIDTH,)
    model = rw.einsum_classifier_graph({k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()})
    onnx.checker.check_model(model, full_check=True)
    matches = decomposed_norms(model)
    assert [m.kind for m in matches] == ["layernorm"] * 3
    scopes = [{n.split("/")[2] if "/Block_" not in n else n.split("/")[2] + "/LayerNorm" for n in m.nodes}
              for m in matches]  # fmt: skip
    assert scopes == [{"LayerNorm_0"}, {"Block_0/LayerNorm"}, {"Block_1/LayerNorm"}]
    in_norm_scopes = {n.name for n in model.graph.node if "LayerNorm" in n.name}
    assert set(norm_nodes(model)) == in_norm_scopes  # every node of each scope, and none of the GELU's x*x
    family = detect_family(model)
    assert family.family == "convolutional" and "3 LayerNorm(s) kept in float" in family.reason
    assert family.counts["dense_with_weights"] == 2 + 2 * rw.EINSUM_BLOCKS


def test_the_real_magika_model_has_two_broadcast_layernorms():
    """The real model of the class (from the magika wheel): tf2onnx broadcasts each statistic with Reshape +
    Expand to a shape computed from Shape(bytes), and divides by n with Mul(1/n)."""
    model = onnx.load(str(rw.magika_model_path()))
    matches = decomposed_norms(model)
    assert [m.kind for m in matches] == ["layernorm", "layernorm"]
    for index, match in enumerate(matches):
        assert len(match.nodes) == 19
        assert all(f"/LayerNorm_{index}/" in name for name in match.nodes)
        ops = {n.op_type for n in model.graph.node if n.name in match.nodes}
        assert {"Reshape", "Expand", "Max", "Sqrt", "Reciprocal", "ReduceSum"} <= ops
    assert "ApplyActivation" not in " ".join(norm_nodes(model))  # the GELUs' x*x are not norms


def test_issue_8_jax_graph_layernorm_squared_with_mul_is_found():
    weights = {
        "embed": np.ones((256, rw.JAX_EMBED)),
        "embed_bias": np.zeros(rw.JAX_EMBED),
        "conv_w": np.ones((rw.JAX_CONV, rw.JAX_EMBED, 1, rw.JAX_KERNEL)),
        "conv_b": np.zeros(rw.JAX_CONV),
        "gamma": np.ones(rw.JAX_CONV),
        "beta": np.zeros(rw.JAX_CONV),
        "head_w": np.ones((rw.JAX_CONV, len(rw.FILE_TYPES))),
        "head_b": np.zeros(len(rw.FILE_TYPES)),
    }
    model = rw.jax_style_graph(weights)
    [match] = decomposed_norms(model)
    assert sorted(n.rsplit("/", 1)[-1] for n in match.nodes) == sorted(
        ["mean", "sub", "square", "var", "add_eps", "sqrt", "div", "mul", "add"]
    )


def test_static_schemes_keep_decomposed_norms_float_dynamic_ones_do_not_list_them():
    model, expected = rw.norm_form_model("moments", 13)
    static = Scheme(preset="cnn", mode="static", target="cpu", op_types=("MatMul", "Mul", "Add"))
    assert set(nodes_outside_scheme(model, static)) == set(expected)
    dynamic = Scheme(preset="transformer", mode="dynamic", target="cpu", op_types=("MatMul",))
    assert nodes_outside_scheme(model, dynamic) == []


def test_fused_layernormalization_is_not_listed_as_decomposed():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    scale = numpy_helper.from_array(np.ones(4, np.float32), "scale")
    node = helper.make_node("LayerNormalization", ["x", "scale"], ["y"], name="ln")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y], [scale]), opset_imports=[helper.make_opsetid("", 17)]
    )
    assert decomposed_norms(model) == []


def einsum_model(equation: str, data_shape: list[int], weight: np.ndarray, weight_first: bool = False):
    inputs = ["w", "x"] if weight_first else ["x", "w"]
    operands = [weight, np.zeros(data_shape, np.float32)] if weight_first else [np.zeros(data_shape), weight]
    out_shape = list(np.einsum(equation, *operands).shape)
    node = helper.make_node("Einsum", inputs, ["y"], name="dense/einsum", equation=equation)
    graph = helper.make_graph(
        [node],
        "einsum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, data_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(
    ("equation", "data_shape", "weight_shape", "weight_first"),
    [
        ("bij,jk->bik", [2, 5, 6], (6, 3), False),
        ("...d,df->...f", [2, 4, 5, 6], (6, 3), False),
        ("bd,dc->bc", [2, 6], (6, 3), False),
        ("btd,fd->btf", [2, 5, 6], (3, 6), False),  # weight stored transposed
        ("jk,bij->bik", [2, 5, 6], (6, 3), True),  # weight first
    ],
)
def test_dense_einsum_becomes_matmul_with_the_same_outputs(equation, data_shape, weight_shape, weight_first):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=weight_shape).astype(np.float32)
    original = einsum_model(equation, data_shape, weight, weight_first)
    x = rng.normal(size=data_shape).astype(np.float32)
    [expected] = run(original, {"x": x})
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(original)
    assert einsum_to_matmul(rewritten) == 1
    onnx.checker.check_model(rewritten)
    assert [n.op_type for n in rewritten.graph.node] == ["MatMul"]
    assert len(rewritten.graph.initializer) == 1  # a transposed weight replaces the original
    [actual] = run(rewritten, {"x": x})
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("equation", "data_shape", "weight_shape"),
    [
        ("bij,jk->bki", [2, 5, 6], (6, 3)),  # output axes reordered
        ("bij,bjk->bik", [2, 5, 6], (2, 6, 3)),  # batched weight
        ("bji,jk->bik", [2, 6, 5], (6, 3)),  # contracts a middle axis
        ("bij,jk->b", [2, 5, 6], (6, 3)),
    ],
)
def test_other_einsums_are_left_alone(equation, data_shape, weight_shape):
    model = einsum_model(equation, data_shape, np.ones(weight_shape, np.float32))
    assert einsum_to_matmul(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Einsum"]


def test_epsilon_in_a_constant_node_with_value_float():
    """torch and older exporters write scalars as Constant(value_float=...): still a constant to the match."""
    model, expected = rw.norm_form_model("rms-pow-sqrt-div", 13)
    eps = helper.make_node("Constant", [], ["eps_node"], name="eps_const", value_float=1e-5)
    for node in model.graph.node:
        node.input[:] = ["eps_node" if name == "eps" else name for name in node.input]
    model.graph.node.insert(0, eps)
    [match] = decomposed_norms(model)
    assert sorted(match.nodes) == sorted(expected)
