"""Jetson bundle: quantize (--target tensorrt) then export in one recipe; every file hashed in manifest.json;
the calibration cache in TensorRT's format parses back to the quantizer's scales; build_engine.sh's trtexec
flags; verify.sh (run with bash) fails on a tampered or missing file; the TensorRT operator check lists
every unsupported node before anything is written."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest
from conftest import (
    DIGITS_CALIBRATION,
    DIGITS_EVAL,
    DIGITS_MODEL,
    FAST_LATENCY,
    one_error_line,
    run_cli,
    write_recipe,
)

from modelforge.export.calibration_cache import qdq_scales, read_calibration_cache

BASH = shutil.which("bash")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """quantize (TensorRT's symmetric int8 Q/DQ) -> export jetson, one recipe, one report."""
    folder = tmp_path_factory.mktemp("jetson")
    recipe = {
        "version": 1,
        "model": str(DIGITS_MODEL),
        "data": {"calibration": str(DIGITS_CALIBRATION), "eval_data": str(DIGITS_EVAL)},
        "passes": [
            {"name": "quantize", "config": {"target": "tensorrt", "method": "entropy", "speed_aware": False}},
            {"name": "export", "config": {"target": "jetson", "name": "digits", "jetpack": "6.1", "max_batch": 64}},
        ],
        "evaluate": {"latency": dict(FAST_LATENCY), "skip_latency": True},
        "gates": {"max_accuracy_drop": 2.0},
        "output": {"dir": str(folder / "bundle")},
    }
    result = run_cli("run", write_recipe(folder / "recipe.yaml", recipe), "-q")
    assert result.returncode == 0, result.explain()
    return folder / "bundle"


def test_bundle_holds_every_file_hashed_and_one_report_for_both_passes(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    expected = {"model.onnx", "calibration.cache", "build_engine.sh", "verify.sh", "README.md", "baseline_stats.json"}
    assert expected <= set(listed)
    for path, digest in listed.items():
        assert hashlib.sha256((bundle / path).read_bytes()).hexdigest() == digest, path
    report = json.loads((bundle / "report.json").read_text())
    assert [s["pass"] for s in report["stages"]] == ["quantize", "export"]
    assert report["stages"][1]["metrics"]["jetson"]["int8"] == "explicit (Q/DQ)"
    assert report["summary"]["top1_agreement"] > 0.95
    readme = (bundle / "README.md").read_text()
    assert "JetPack 6.1" in readme and "TensorRT 10.3" in readme and "verify.sh" in readme


def test_calibration_cache_parses_back_to_the_quantizers_scales(bundle):
    import onnx

    header, scales = read_calibration_cache(bundle / "calibration.cache")
    assert header == "TRT-100300-EntropyCalibration2"
    expected = qdq_scales(onnx.load(bundle / "model.onnx"))
    assert len(expected) >= 3 and scales == expected  # float32 -> big-endian hex -> float32 is exact
    line = next(row for row in (bundle / "calibration.cache").read_text().splitlines()[1:] if row.startswith("image"))
    value = np.frombuffer(bytes.fromhex(line.split(": ")[1]), dtype=">f4")[0]
    assert value == np.float32(expected["image"]) and 0 < value < 1


def test_build_script_runs_trtexec_with_explicit_int8_and_the_profile(bundle):
    script = (bundle / "build_engine.sh").read_text()
    assert "--int8" in script and "--fp16" in script and "--calib" not in script  # explicit Q/DQ: no cache
    assert "--minShapes=image:1x1x8x8" in script and "--maxShapes=image:64x1x8x8" in script
    assert "--memPoolSize=workspace:1024" in script and "--timingCacheFile=timing.cache" in script
    assert "bash ./verify.sh" in script
    for name in ("build_engine.sh", "verify.sh"):
        assert subprocess.run([BASH, "-n", bundle / name]).returncode == 0


@pytest.mark.skipif(BASH is None, reason="verify.sh needs bash")
def test_verify_script_passes_untouched_and_fails_on_a_tampered_or_missing_file(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    ok = subprocess.run([BASH, copy / "verify.sh"], capture_output=True, text=True)
    assert ok.returncode == 0 and "verify: OK" in ok.stdout, ok.stderr
    model = bytearray((copy / "model.onnx").read_bytes())
    model[-1] ^= 1  # one flipped bit, as a corrupted over-the-air update
    (copy / "model.onnx").write_bytes(bytes(model))
    tampered = subprocess.run([BASH, copy / "verify.sh"], capture_output=True, text=True)
    assert tampered.returncode == 1 and "MODIFIED model.onnx" in tampered.stderr
    (copy / "calibration.cache").unlink()
    missing = subprocess.run([BASH, copy / "build_engine.sh"], capture_output=True, text=True)
    assert missing.returncode == 1 and "MISSING calibration.cache" in missing.stderr  # never reaches trtexec


def test_float_model_gets_an_entropy_calibration_cache_and_dla_flags(tmp_path):
    from modelforge.data import bind, open_dataset
    from modelforge.model.artifact import IOSpec, TensorSpec
    from modelforge.quantization.calibration import calibrate
    from modelforge.recipe.schema import DataSource

    out = tmp_path / "bundle"
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "jetson", "--precision", "int8", "--jetpack", "6.0", "--dla-core", "0",
        "-c", DIGITS_CALIBRATION, "-e", DIGITS_EVAL, "-o", out, "--skip-latency", "--no-baseline-stats",
        "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    header, scales = read_calibration_cache(out / "calibration.cache")
    assert header == "TRT-8600-EntropyCalibration2"
    # The same tensors, calibrated independently with the quantizer's entropy calibration (symmetric).
    io = IOSpec(inputs=(TensorSpec("image", "float32", (None, 1, 8, 8)),), outputs=())
    data = bind(open_dataset(DataSource(path=DIGITS_CALIBRATION), io.inputs[0].shape), io)
    model = tmp_path / "model.onnx"
    shutil.copyfile(DIGITS_MODEL, model)
    ranges = calibrate(model, list(scales), data, method="entropy", symmetric=True, threads=1).ranges
    for name, scale in scales.items():
        assert scale == pytest.approx(max(abs(v) for v in ranges[name]) / 127, rel=1e-6), name
    script = (out / "build_engine.sh").read_text()
    assert "--calib=calibration.cache" in script and "--useDLACore=0 --allowGPUFallback" in script
    assert not (out / "baseline_stats.json").exists()


def _unsupported_model(path):
    """Symmetric-less (uint8) Q/DQ, Mish and Det: three things TensorRT 8.6's parser rejects."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant_in"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dequant_in"),
        helper.make_node("Relu", ["dq"], ["r"], name="relu_ok"),
        helper.make_node("Mish", ["r"], ["m"], name="mish_act"),
        helper.make_node("Reshape", ["m", "shape"], ["sq"], name="to_square"),
        helper.make_node("Det", ["sq"], ["y"], name="determinant"),
    ]
    graph = helper.make_graph(
        nodes,
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        initializer=[
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]),
            helper.make_tensor("zp", TensorProto.UINT8, [], [128]),
            helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 2, 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)


def test_op_check_lists_every_unsupported_node_before_writing_anything(tmp_path):
    model = tmp_path / "odd.onnx"
    _unsupported_model(model)
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32))
    out = tmp_path / "bundle"
    result = run_cli(
        "export", model, "--target", "jetson", "--jetpack", "6.0", "-c", tmp_path / "calib.npz", "-o", out,
        "--skip-latency", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 3, result.explain()
    line = one_error_line(result)
    for expected in (
        "5 node(s)",
        "opset 18",
        "quant_in (QuantizeLinear): uint8 zero point",
        "dequant_in",
        "mish_act (Mish)",
        "determinant (Det)",
    ):
        assert expected in line, line
    assert "relu_ok" not in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] != []
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_2_4_pruned_model_builds_with_sparse_weights(tmp_path):
    import onnx

    model = onnx.load(DIGITS_MODEL)
    model.metadata_props.add(key="modelforge.sparsity", value=json.dumps({"pattern": "2:4", "layers": []}))
    onnx.save(model, tmp_path / "pruned.onnx")
    out = tmp_path / "bundle"
    result = run_cli(
        "export", tmp_path / "pruned.onnx", "--target", "jetson", "-c", DIGITS_CALIBRATION, "-o", out,
        "--skip-latency", "--no-baseline-stats", "--threads", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    assert "--sparsity=enable" in (out / "build_engine.sh").read_text()


def test_calibration_data_and_no_precision_build_int8_and_say_why(tmp_path):
    """--precision auto on a float model: the calibration data given is used (INT8), not silently ignored."""
    out = tmp_path / "bundle"
    result = run_cli(
        "export", DIGITS_MODEL, "--target", "jetson", "-c", DIGITS_CALIBRATION, "-o", out, "--skip-latency",
        "--no-baseline-stats", "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    assert "jetson: building INT8: calibration data given" in result.stderr
    assert read_calibration_cache(out / "calibration.cache")[1]
    assert "--int8" in (out / "build_engine.sh").read_text()


def test_a_model_without_data_gets_an_fp16_bundle_and_lines_saying_what_was_skipped(tmp_path):
    out = tmp_path / "bundle"
    result = run_cli("export", DIGITS_MODEL, "--target", "jetson", "-o", out, "--threads", "1")
    assert result.returncode == 0, result.explain()
    lines = result.stderr.splitlines()
    assert any("jetson: building FP16: a float model and no calibration data" in line for line in lines)
    assert any("no drift baseline: no data" in line for line in lines)
    assert any("evaluation skipped" in line for line in lines)
    assert not (out / "calibration.cache").exists() and not (out / "baseline_stats.json").exists()
    script = (out / "build_engine.sh").read_text()
    assert "--fp16" in script and "--int8" not in script
    report = json.loads((out / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["pass"] == "export")["metrics"]
    assert stage["precision_choice"].startswith("fp16") and report["evaluation"]["skipped"]
