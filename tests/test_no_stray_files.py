"""A run writes only its output folder and a private temporary folder: never the current directory.

onnxruntime's symbolic shape inference (run by graph preparation) saves `sym_shape_infer_temp.onnx` and a
`<uuid>.data` file into the current directory whenever it cannot infer every shape, e.g. for an operator it
has no shape rule for. The model here holds such an operator (com.microsoft FusedMatMul, which onnxruntime
runs but the symbolic inference does not know), so every run takes that path; a canary test proves it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, load_report, run_cli, snapshot


def fused_matmul_model(folder: Path) -> tuple[Path, Path]:
    """A two-layer MLP whose second layer is onnxruntime's FusedMatMul; and calibration data for it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("FusedMatMul", ["r", "w2"], ["y"], name="fused", domain="com.microsoft", alpha=1.0),
        ],
        "incomplete-shapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [
            numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal((32, 10)).astype(np.float32), "w2"),
        ],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fused.onnx"
    onnx.save(model, path)
    data = folder / "calibration.npz"
    np.savez(data, x=rng.random((48, 64), dtype=np.float32), labels=rng.integers(0, 10, 48))
    return path, data


def test_canary_the_model_makes_shape_inference_write_into_cwd(tmp_path, monkeypatch):
    """Without the fix this is what a run would leave in the user's folder."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model_path, _ = fused_matmul_model(tmp_path / "model")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(Exception, match="Incomplete symbolic shape inference"):
        SymbolicShapeInference.infer_shapes(onnx.load(model_path))
    assert "sym_shape_infer_temp.onnx" in os.listdir(cwd)


def _private_tmp(tmp_path: Path) -> Path:
    folder = tmp_path / "private-tmp"
    folder.mkdir()
    return folder


# onnxruntime's telemetry keeps one session-id file in the temporary folder, written on `import onnxruntime`
# (any program using onnxruntime does, and reuses it): not a file of the run's.
ONNXRUNTIME_SESSION_FILE = ".ses"


def _left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ONNXRUNTIME_SESSION_FILE)


def test_run_writes_nothing_into_cwd_or_leaves_temp_files(tmp_path):
    model_path, data = fused_matmul_model(tmp_path / "model")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("the user's own file\n")
    before = snapshot(cwd)
    private = _private_tmp(tmp_path)
    out = tmp_path / "out"

    env = cli_env(TMPDIR=str(private), MODELFORGE_CACHE_DIR=str(tmp_path / "cache"))
    result = run_cli("quantize", model_path, "-c", data, "-o", out, "--threads", "1", cwd=cwd, env=env)

    assert result.returncode == 0, result.explain()
    assert snapshot(cwd) == before, sorted(os.listdir(cwd))
    assert _left_in(private) == [], "temporary files left behind"
    stage = load_report(out)["stages"][-1]
    assert stage["metrics"]["symbolic_shape_inference"] == 0  # the run took the temp-file path


def _read_only_runner(cwd: Path) -> list[str]:
    """A command prefix under which `cwd` (mode 555) really is read-only, also for root, or skip.

    root ignores permission bits through CAP_DAC_OVERRIDE: the child drops it (and DAC_READ_SEARCH) from its
    capability bounding set, so after exec it is a root without them, bound by the mode bits like anyone."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only for the run")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_run_from_a_read_only_cwd(tmp_path):
    model_path, data = fused_matmul_model(tmp_path / "model")
    cwd = tmp_path / "read-only"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("the user's own file\n")
    before = snapshot(cwd)
    private = _private_tmp(tmp_path)
    out = tmp_path / "out"
    prefix = _read_only_runner(cwd)
    env = cli_env(TMPDIR=str(private), MODELFORGE_CACHE_DIR=str(tmp_path / "cache"))
    cwd.chmod(0o555)
    try:
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "open('probe', 'w')"], cwd=cwd, capture_output=True, text=True
        )
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, "the folder is not read-only"
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "modelforge", "quantize", str(model_path), "-c", str(data)]
            + ["-o", str(out), "--threads", "1"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        cwd.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(cwd) == before
    assert (out / "model.onnx").is_file()
    assert _left_in(private) == []
