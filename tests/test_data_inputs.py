"""Data formats (npz, npy, image folders) and their validation against the model before any work starts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import (
    DIGITS_CALIBRATION,
    DIGITS_EVAL,
    DIGITS_MODEL,
    FAST_LATENCY,
    leftovers,
    load_report,
    one_error_line,
    ort_predictions,
    run_cli,
    write_recipe,
)
from onnx import TensorProto, helper, numpy_helper


def _two_input_model(path):
    """y = (a + b) @ W: two named inputs, to check that arrays are matched to inputs by name."""
    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("MatMul", ["s", "W"], ["y"])],
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_npz_key_must_name_each_input_of_a_multi_input_model(tmp_path):
    model = _two_input_model(tmp_path / "two.onnx")
    data = tmp_path / "wrong_key.npz"
    rng = np.random.default_rng(0)
    np.savez(data, a=rng.random((16, 4), dtype=np.float32), c=rng.random((16, 4), dtype=np.float32))
    out = tmp_path / "out"
    result = run_cli("quantize", model, "-c", data, "-o", out, "-q")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(data) in line
    assert "'b'" in line  # the model input that has no array
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_multi_input_npz_keyed_by_name_runs(tmp_path):
    model = _two_input_model(tmp_path / "two.onnx")
    data = tmp_path / "good.npz"
    rng = np.random.default_rng(0)
    np.savez(data, b=rng.random((20, 4), dtype=np.float32), a=rng.random((20, 4), dtype=np.float32))
    out = tmp_path / "out"
    result = run_cli("quantize", model, "-c", data, "-o", out, "-q", "--threads", "1")
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    assert report["summary"]["output_cosine"] > 0.99


@pytest.mark.parametrize("role", ["calibration", "eval"])
def test_wrong_shape_names_file_tensor_and_shapes(tmp_path, role):
    bad = tmp_path / "nine_by_nine.npz"
    np.savez(bad, image=np.zeros((10, 1, 9, 9), dtype=np.float32), labels=np.zeros(10, dtype=np.int64))
    calibration, eval_data = (bad, DIGITS_EVAL) if role == "calibration" else (DIGITS_CALIBRATION, bad)
    out = tmp_path / "out"
    result = run_cli("quantize", DIGITS_MODEL, "-c", calibration, "-e", eval_data, "-o", out, "-q")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert str(bad) in line
    assert "'image'" in line
    assert "[N, 1, 9, 9]" in line  # actual
    assert "[batch, 1, 8, 8]" in line  # expected, as the model declares it
    assert not out.exists()
    assert leftovers(tmp_path) == []
    assert "Calibrating" not in result.stderr  # rejected before any work


def test_wrong_rank_and_dtype_are_rejected(tmp_path):
    flat = tmp_path / "flat.npz"
    np.savez(flat, image=np.zeros((10, 64), dtype=np.float32))
    result = run_cli("quantize", DIGITS_MODEL, "-c", flat, "-o", tmp_path / "o1", "-q")
    assert result.returncode == 2, result.explain()
    assert "rank" in one_error_line(result)

    ints = tmp_path / "ints.npz"
    np.savez(ints, image=np.zeros((10, 1, 8, 8), dtype=np.int32))
    result = run_cli("quantize", DIGITS_MODEL, "-c", ints, "-o", tmp_path / "o2", "-q")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert "int32" in line and "float32" in line


def test_npy_input_works_for_a_single_input_model(tmp_path):
    images = np.load(DIGITS_CALIBRATION)["image"]
    npy = tmp_path / "calibration.npy"
    np.save(npy, images)
    out = tmp_path / "out"
    result = run_cli("quantize", DIGITS_MODEL, "-c", npy, "-e", DIGITS_EVAL, "-o", out, "-q", "--threads", "1")
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    assert report["stages"][-1]["metrics"]["calibration_samples"] == len(images)
    assert report["summary"]["accuracy_drop_pp"] <= 1.0


def _write_pngs(folder, images, labels=None):
    """8-bit grayscale PNGs; one sub-folder per class when labels are given."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        pixels = np.clip(np.rint(image.reshape(8, 8) * 255), 0, 255).astype(np.uint8)
        target = folder if labels is None else folder / f"class_{labels[i]}"
        target.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(target / f"{i:04d}.png")  # uint8 2-D: grayscale (mode L)


def test_image_folders_with_class_subfolders_give_accuracy(tmp_path):
    pytest.importorskip("PIL")
    calibration = np.load(DIGITS_CALIBRATION)["image"][:64]
    evaluation = np.load(DIGITS_EVAL)
    x, y = evaluation["image"][:120], evaluation["labels"][:120]
    _write_pngs(tmp_path / "calibration", calibration)  # flat: no labels
    _write_pngs(tmp_path / "eval", x, y)
    preprocessing = {"color": "L", "size": [8, 8], "resize": 8, "mean": [0.0], "std": [1.0], "layout": "NCHW"}
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "folders.yaml",
        {
            "model": str(DIGITS_MODEL),
            "data": {
                "calibration": {"path": "calibration", "preprocessing": preprocessing},
                "eval_data": {"path": "eval", "preprocessing": preprocessing},
            },
            "passes": ["quantize"],
            "evaluate": {"latency": dict(FAST_LATENCY)},
            "gates": {"max_accuracy_drop": 5.0},
            "output": {"dir": str(out)},
        },
    )
    result = run_cli("run", recipe, "-q")
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    metrics = report["evaluation"]["metrics"]
    assert metrics["samples"] == len(x)
    assert report["stages"][-1]["metrics"]["calibration_samples"] == len(calibration)
    # Accuracy is measured against the class sub-folders: it must match onnxruntime's own predictions on
    # the original arrays (the PNGs hold the same pixels to within 1/510) scored against the true labels.
    expected = float(np.mean(ort_predictions(DIGITS_MODEL, x) == y))
    assert expected > 0.9
    assert report["summary"]["accuracy_baseline"] == pytest.approx(expected, abs=1.5 / len(x))
    assert report["gates"][0]["passed"]


def test_image_folder_size_must_match_the_model_input(tmp_path):
    _write_pngs(tmp_path / "imgs", np.load(DIGITS_CALIBRATION)["image"][:4])
    recipe = write_recipe(
        tmp_path / "r.yaml",
        {
            "model": str(DIGITS_MODEL),
            "data": {"calibration": {"path": "imgs", "preprocessing": {"color": "L", "size": [9, 9]}}},
            "passes": ["quantize"],
            "output": {"dir": str(tmp_path / "out")},
        },
    )
    result = run_cli("run", recipe, "-q")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert "imgs" in line and "[batch, 1, 8, 8]" in line


def test_image_flags_on_the_command_line(tmp_path):
    pytest.importorskip("PIL")
    evaluation = np.load(DIGITS_EVAL)
    _write_pngs(tmp_path / "calibration", np.load(DIGITS_CALIBRATION)["image"][:32])
    _write_pngs(tmp_path / "eval", evaluation["image"][:60], evaluation["labels"][:60])
    out = tmp_path / "out"
    result = run_cli(
        "quantize", DIGITS_MODEL, "-c", tmp_path / "calibration", "-e", tmp_path / "eval", "-o", out,
        "--color", "L", "--mean", "0", "--std", "1", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    report = load_report(out)
    assert report["summary"]["accuracy_baseline"] is not None
    assert report["recipe"]["data"]["eval_data"]["preprocessing"]["color"] == "L"

    wrong = run_cli("quantize", DIGITS_MODEL, "-c", tmp_path / "calibration", "-o", tmp_path / "o2", "--color", "XYZ")
    assert wrong.returncode == 2 and "color" in one_error_line(wrong)


def test_image_flags_with_array_files_are_a_usage_error(tmp_path):
    result = run_cli("quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-o", tmp_path / "out", "--mean", "0.5")
    assert result.returncode == 2, result.explain()
    assert "--mean" in one_error_line(result) and "image folders only" in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_file_suffixes_are_case_insensitive(tmp_path):
    import shutil

    shutil.copyfile(DIGITS_MODEL, tmp_path / "DIGITS.ONNX")
    shutil.copyfile(DIGITS_CALIBRATION, tmp_path / "CALIB.NPZ")
    result = run_cli("quantize", tmp_path / "DIGITS.ONNX", "-c", tmp_path / "CALIB.NPZ", "-o", tmp_path / "out", "-q")
    assert result.returncode == 0, result.explain()
