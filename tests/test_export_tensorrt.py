"""TensorRT engines: without tensorrt or a GPU, `export --target tensorrt` and opening a .plan stop with one
line naming what is missing (exit 2, nothing written); with both, the engine is built (FP16 and explicit INT8)
and measured against the ONNX original."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, FAST_LATENCY, one_error_line, run_cli, write_recipe


def _gpu_tensorrt() -> str | None:
    """Why the TensorRT path cannot run here, or None when it can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (pip install 'modelforge[tensorrt]' on a machine with an NVIDIA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch"
    return None


MISSING = _gpu_tensorrt()


@pytest.mark.skipif(MISSING is None, reason="tensorrt and a GPU are present: the real build is tested instead")
def test_tensorrt_target_without_tensorrt_or_gpu_is_one_line_exit_2(tmp_path):
    out = tmp_path / "engine"
    result = run_cli("export", DIGITS_MODEL, "--target", "tensorrt", "-c", DIGITS_CALIBRATION, "-o", out, "-q")
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert "export --target tensorrt" in line
    assert "pip install 'modelforge[tensorrt]'" in line or "NVIDIA GPU" in line
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.skipif(MISSING is None, reason="tensorrt and a GPU are present")
def test_opening_an_engine_without_tensorrt_names_what_is_missing(tmp_path):
    from modelforge.errors import InputError
    from modelforge.runtimes.base import open_backend

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not an engine")
    with pytest.raises(InputError) as caught:
        open_backend(plan)
    assert "running a TensorRT engine" in caught.value.one_line()


@pytest.mark.skipif(MISSING is not None, reason=f"TensorRT path not testable here: {MISSING}")
@pytest.mark.parametrize("quantize", [False, True], ids=["fp16", "explicit-int8"])
def test_engine_is_built_and_matches_the_onnx_model(tmp_path, quantize):
    passes = [{"name": "export", "config": {"target": "tensorrt", "timing_cache": str(tmp_path / "timing.cache")}}]
    if quantize:
        passes.insert(0, {"name": "quantize", "config": {"target": "tensorrt", "speed_aware": False}})
    recipe = {
        "version": 1,
        "model": str(DIGITS_MODEL),
        "data": {"calibration": str(DIGITS_CALIBRATION), "eval_data": str(DIGITS_EVAL)},
        "passes": passes,
        "evaluate": {"latency": dict(FAST_LATENCY)},
        "output": {"dir": str(tmp_path / "out")},
    }
    result = run_cli("run", write_recipe(tmp_path / "recipe.yaml", recipe), "-q")
    assert result.returncode == 0, result.explain()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    metrics = report["stages"][-1]["metrics"]
    assert metrics["tensorrt"]["precision"] == ("int8" if quantize else "fp16")
    assert metrics["engine_vs_onnx"]["top1_agreement"] > 0.97
    assert (tmp_path / "out" / "model.plan").stat().st_size > 0 and (tmp_path / "timing.cache").is_file()
