"""MODELFORGE_DEBUG=1 shows the library failure behind a pass error; without it, the error is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, one_error_line, run_cli


def batch_three_model(folder: Path) -> tuple[Path, Path]:
    """Valid ONNX that onnxruntime loads, but a hard-coded Reshape to [3, 64] fails on any other batch size:
    calibration (batches of 8) fails inside onnxruntime, a pass error on valid input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
            helper.make_node("MatMul", ["r", "w"], ["y"], name="mm"),
        ],
        "batch-three",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [
            numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([3, 64], dtype=np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "batch3.onnx"
    onnx.save(model, path)
    data = folder / "calibration.npz"
    np.savez(data, x=rng.random((32, 64), dtype=np.float32))
    return path, data


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("debug")
    model, data = batch_three_model(folder)

    def run(debug: str | None):
        extra = {"MODELFORGE_CACHE_DIR": str(folder / "cache")}
        if debug is not None:
            extra["MODELFORGE_DEBUG"] = debug
        return run_cli("quantize", model, "-c", data, "-o", folder / "out", "-q", env=cli_env(**extra))

    return run


@pytest.mark.parametrize("debug", [None, "0"])
def test_pass_error_is_one_line_without_debug(failing_run, debug):
    result = failing_run(debug)
    assert result.returncode == 3, result.explain()
    line = one_error_line(result)
    assert line.startswith("error: pass 'quantize' failed: calibration run failed"), line


def test_debug_prints_the_library_traceback_behind_the_pass_error(failing_run):
    plain = one_error_line(failing_run(None))
    result = failing_run("1")
    assert result.returncode == 3, result.explain()
    stderr = result.stderr
    # The cause is kept (`raise PassError(...) from exc`) and printed: onnxruntime's own exception first,
    # then the PassError it caused, then the usual one-line error, last.
    assert "The above exception was the direct cause of the following exception" in stderr, stderr
    cause, _, effect = stderr.partition("The above exception was the direct cause")
    assert "Traceback" in cause and "onnxruntime" in cause and "Reshape" in cause, cause
    assert "modelforge.errors.PassError" in effect, effect
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1] == plain


def test_pass_errors_keep_their_cause():
    """The wrapped library exception stays reachable (`__cause__`), not only in the CLI."""
    from modelforge.errors import PassError
    from modelforge.runtimes.onnxruntime import create_session

    with pytest.raises(PassError) as caught:
        create_session(b"not an onnx model", threads=1)
    assert caught.value.__cause__ is not None
    assert "onnxruntime" in type(caught.value.__cause__).__module__
