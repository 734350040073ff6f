"""Drift monitoring: the baseline an export ships, PSI/KS near zero on the data it was made from and high on
shifted data, the confidence shift of a real model, and `modelforge drift`'s exit codes and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, one_error_line, run_cli

from modelforge.data import bind, open_dataset
from modelforge.model.artifact import IOSpec, TensorSpec
from modelforge.monitoring.baseline import build_baseline
from modelforge.monitoring.drift import ks, psi, score_features
from modelforge.recipe.schema import DataSource


def _bound(path, width=64):
    io = IOSpec(inputs=(TensorSpec("x", "float32", (None, width)),), outputs=())
    return bind(open_dataset(DataSource(path=path), io.inputs[0].shape), io)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory, digits_arrays):
    """sklearn's digits as 64 tabular features: a reference half, a fresh half, and a copy with feature 20
    shifted (the kind of change a broken upstream pipeline makes to one column)."""
    x, _ = digits_arrays
    folder = tmp_path_factory.mktemp("drift-tabular")
    reference, fresh = x[::2], x[1::2]
    shifted = fresh.copy()
    shifted[:, 20] = shifted[:, 20] * 0.3 + 0.6
    paths = {}
    for name, values in (("reference", reference), ("fresh", fresh), ("shifted", shifted)):
        paths[name] = folder / f"{name}.npz"
        np.savez(paths[name], x=values)
    baseline = build_baseline(None, _bound(paths["reference"]), None)
    return paths, baseline


def test_psi_and_ks_are_near_zero_on_the_same_distribution_and_flag_the_shifted_feature(tabular):
    paths, baseline = tabular
    same = score_features(baseline, _bound(paths["reference"]))
    assert len(same) == 64
    assert max(s["psi"] for s in same) < 0.01
    assert max(s["ks"] for s in same) < 0.02
    fresh = score_features(baseline, _bound(paths["fresh"]))
    assert max(s["psi"] for s in fresh) < 0.1  # another sample of the same digits: stable
    shifted = score_features(baseline, _bound(paths["shifted"]))
    worst = shifted[0]
    assert (worst["input"], worst["feature"]) == ("x", 20)
    assert worst["psi"] > 1.0 and worst["ks"] > 0.5 and worst["ks_p_value"] < 1e-6
    assert shifted[1]["psi"] < 0.1  # the other features did not move


def test_psi_and_ks_match_their_textbook_values():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(20000)
    from modelforge.monitoring.features import summarize

    summary = summarize(reference)
    moved = rng.standard_normal(20000) + 0.5
    # KS of N(0,1) vs N(0.5,1) is Phi(0.25) - Phi(-0.25) = 0.197; PSI of a half-sigma shift is about 0.25.
    statistic, _ = ks(summary["sketch"], summary["count"], moved)
    assert abs(statistic - 0.197) < 0.02
    assert 0.2 < psi(summary["histogram"], moved) < 0.32


@pytest.fixture(scope="module")
def digits_export(tmp_path_factory):
    """A Jetson export of the bundled digits CNN: its baseline_stats.json sits beside model.onnx."""
    out = tmp_path_factory.mktemp("drift-export") / "bundle"
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "jetson", "--precision", "fp16", "-c", DIGITS_CALIBRATION,
        "-e", DIGITS_EVAL, "-o", out, "--skip-latency", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    return out


def test_export_ships_a_baseline_with_input_and_confidence_statistics(digits_export):
    baseline = json.loads((digits_export / "baseline_stats.json").read_text())
    (image,) = baseline["inputs"]
    assert image["name"] == "image" and image["sample_shape"] == [1, 8, 8]
    assert len(image["features"]) == 1  # one channel
    assert 0 <= image["features"][0]["min"] <= image["features"][0]["mean"] <= image["features"][0]["max"] <= 1
    confidence = baseline["confidence"]
    assert confidence["output"] == "logits"
    assert 0.8 < confidence["evaluation"]["mean"] <= 1.0  # a 99%-accurate model is sure of its answers
    manifest = json.loads((digits_export / "manifest.json").read_text())
    assert "baseline_stats.json" in {f["path"] for f in manifest["files"]}


def test_drift_command_passes_on_eval_data_and_fails_on_washed_out_images(digits_export, tmp_path):
    calm = run_cli("drift", digits_export / "baseline_stats.json", DIGITS_EVAL, "-o", tmp_path / "calm.json")
    assert calm.returncode == 0, calm.explain()
    report = json.loads((tmp_path / "calm.json").read_text())
    assert report["passed"] and report["features"][0]["psi"] < 0.05
    assert abs(report["confidence"]["mean_shift"]) < 0.05  # the model found beside the baseline was run
    assert report["confidence"]["reference"] == "the baseline's evaluation data"
    assert {c["name"] for c in report["checks"]} == {"max_psi", "max_confidence_psi"}

    x = np.load(DIGITS_EVAL)["image"]
    rng = np.random.default_rng(0)
    # A washed-out, noisy camera: contrast down, brightness up, sensor noise.
    noisy = np.clip(x * 0.6 + 0.3 + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    np.savez(tmp_path / "noisy.npz", image=noisy)
    drifted = run_cli(
        "drift", digits_export / "baseline_stats.json", tmp_path / "noisy.npz", "--max-psi", "0.2",
        "--max-confidence-drop", "0.05", "-o", tmp_path / "noisy.json",
    )  # fmt: skip
    assert drifted.returncode == 1, drifted.explain()
    assert "DRIFT" in drifted.stderr and "max_psi" in drifted.stderr
    assert "image" in drifted.stdout  # the worst features are printed
    report = json.loads((tmp_path / "noisy.json").read_text())
    assert report["features"][0]["psi"] > 0.2 and report["drifted_features"]
    assert report["confidence"]["mean_shift"] < -0.05  # the model grew less sure on washed-out digits
    checks = {c["name"]: c["passed"] for c in report["checks"]}
    assert checks == {"max_psi": False, "max_confidence_psi": False, "max_confidence_drop": False}


def test_a_confidence_psi_over_the_threshold_is_drift_even_when_no_feature_drifted(digits_export, tmp_path):
    """Calibration data looks like the baseline's inputs (its features come from it) but the model is surer of
    it than of the eval data the confidence baseline came from: the confidence's PSI decides the verdict."""
    result = run_cli("drift", digits_export / "baseline_stats.json", DIGITS_CALIBRATION, "-o", tmp_path / "d.json")
    assert result.returncode == 1, result.explain()
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["features"][0]["psi"] < 0.01 and not report["drifted_features"]
    psi = report["confidence"]["psi"]
    assert psi > 0.2
    assert {c["name"]: c["passed"] for c in report["checks"]} == {"max_psi": True, "max_confidence_psi": False}
    assert "DRIFT (max_confidence_psi" in result.stderr and "NO DRIFT" not in result.stderr
    assert "against the baseline's evaluation data" in result.stdout
    # A threshold above the score passes it.
    calm = run_cli(
        "drift", digits_export / "baseline_stats.json", DIGITS_CALIBRATION, "--max-psi", str(psi + 0.01),
        "-o", tmp_path / "calm.json",
    )  # fmt: skip
    assert calm.returncode == 0, calm.explain()


def test_drift_bad_inputs_are_one_line_exit_2_and_write_nothing(digits_export, tmp_path):
    baseline = digits_export / "baseline_stats.json"
    not_json = tmp_path / "broken.json"
    not_json.write_text("{not json")
    result = run_cli("drift", not_json, DIGITS_CALIBRATION, "-o", tmp_path / "a.json")
    assert result.returncode == 2 and "broken.json" in one_error_line(result)

    np.savez(tmp_path / "wrong.npz", image=np.zeros((4, 3, 8, 8), dtype=np.float32))
    result = run_cli("drift", baseline, tmp_path / "wrong.npz", "-o", tmp_path / "b.json")
    assert result.returncode == 2 and "wrong.npz" in one_error_line(result)

    existing = tmp_path / "kept.json"
    existing.write_text("mine")
    result = run_cli("drift", baseline, DIGITS_CALIBRATION, "-o", existing)
    assert result.returncode == 2 and "--force" in one_error_line(result)
    assert existing.read_text() == "mine"
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("named", ["../elsewhere/model.onnx", "ABSOLUTE", "linked.onnx"])
def test_a_baseline_never_names_a_model_outside_its_folder(digits_export, tmp_path, named):
    """The baseline file is the user's data, not an instruction: its `model` field opens a model only inside the
    baseline's own folder (no `..`, no absolute path, no link), so a crafted file cannot make drift read elsewhere."""
    import shutil

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copyfile(DIGITS_MODEL, outside / "model.onnx")
    folder = tmp_path / "export"
    folder.mkdir()
    baseline = json.loads((digits_export / "baseline_stats.json").read_text())
    if named == "ABSOLUTE":
        named = str(outside / "model.onnx")
    elif named == "linked.onnx":
        (folder / named).symlink_to(outside / "model.onnx")
    baseline["model"] = named
    (folder / "baseline_stats.json").write_text(json.dumps(baseline))
    result = run_cli("drift", folder / "baseline_stats.json", DIGITS_EVAL, "-o", tmp_path / "d.json")
    assert result.returncode == 0, result.explain()
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["model"] is None and report["confidence"] is None  # the named model was never opened
