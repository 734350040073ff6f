"""Model formats that are programs (issue 25 §1, §2): a TorchScript archive's scripted `forward` and a SavedModel's
signature can read and write any file when they run. They are refused (exit 2, one line naming the safe
alternative) before anything loads, dry run or not, unless the command line says --trust-model-code. Each
crafted model writes a marker file when its code runs; the marker's presence is the proof either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import one_error_line, run_cli, write_recipe

torch = pytest.importorskip("torch")


class MarkerWriter(torch.nn.Module):
    """A model whose scripted forward writes a file: what a crafted archive from a hub could do."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.head = torch.nn.Linear(64, 10)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        torch.save(torch.zeros(1), self.marker)
        return self.head(torch.flatten(pixels, 1))


@pytest.fixture
def scripted(tmp_path) -> tuple[Path, Path, Path]:
    """(archive, calibration data, marker path) for a TorchScript archive that writes the marker when it runs."""
    marker = tmp_path / "pwned"
    torch.jit.script(MarkerWriter(str(marker))).save(str(tmp_path / "model.pt"))
    data = tmp_path / "calibration.npz"
    np.savez(data, pixels=np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32))
    assert not marker.exists()
    return tmp_path / "model.pt", data, marker


def _refused(result, marker: Path, what: str) -> str:
    assert result.returncode == 2, result.explain()
    line = one_error_line(result)
    assert what in line and "--trust-model-code" in line
    assert not marker.exists(), "the model's code ran"
    return line


@pytest.mark.parametrize("dry_run", [False, True])
def test_torchscript_is_refused_before_its_code_runs(scripted, tmp_path, dry_run):
    model, data, marker = scripted
    out = tmp_path / "out"
    flags = ["--dry-run"] if dry_run else []
    result = run_cli("quantize", model, "-c", data, "-o", out, "-q", *flags)
    line = _refused(result, marker, "TorchScript")
    assert "torch.export.save" in line  # the safe alternative is named
    assert not out.exists()


def test_every_command_that_loads_a_model_refuses_torchscript(scripted, tmp_path):
    model, data, marker = scripted
    _refused(run_cli("inspect", model, "--json"), marker, "TorchScript")
    _refused(run_cli("debug", model, "-c", data, "-q"), marker, "TorchScript")
    export = run_cli("export", model, "--target", "triton", "-c", data, "-o", tmp_path / "t", "-q")
    _refused(export, marker, "TorchScript")
    assert "ONNX" in one_error_line(run_cli("bench", model))  # bench measures ONNX only: never loaded either
    assert not marker.exists()


def test_a_recipe_cannot_trust_model_code_by_itself(scripted, tmp_path):
    model, data, marker = scripted
    recipe = {
        "model": {"path": str(model), "trust_model_code": True},
        "data": {"calibration": str(data)},
        "passes": ["quantize"],
        "output": {"dir": str(tmp_path / "out")},
    }
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    for flags in ([], ["--dry-run"]):
        line = _refused(run_cli("run", path, *flags), marker, "model.trust_model_code")
        assert "recipe.yaml" in line
    recipe["model"] = str(model)  # without the field: refused as from the flags
    _refused(run_cli("run", write_recipe(path, recipe), "--dry-run"), marker, "TorchScript")


def test_trust_model_code_on_the_command_line_loads_it(scripted, tmp_path):
    """The flag is what lets the archive run (the marker proves the refusals above are real)."""
    model, data, marker = scripted
    result = run_cli("quantize", model, "-c", data, "-o", tmp_path / "out", "-q", "--dry-run", "--trust-model-code")
    assert marker.exists(), result.explain()


def test_pt2_and_onnx_need_no_trust(tmp_path):
    """The safe alternative the refusal names loads without the flag."""
    from conftest import DIGITS_CALIBRATION, DIGITS_MODEL

    program = torch.export.export(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval(),
                                  (torch.zeros(2, 1, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))  # fmt: skip
    torch.export.save(program, str(tmp_path / "model.pt2"))
    data = tmp_path / "calibration.npz"
    np.savez(data, pixels=np.zeros((8, 1, 8, 8), np.float32))
    for model, calibration in ((tmp_path / "model.pt2", data), (DIGITS_MODEL, DIGITS_CALIBRATION)):
        result = run_cli("quantize", model, "-c", calibration, "-o", tmp_path / "out", "--dry-run")
        assert result.returncode == 0, result.explain()


def _marker_savedmodel(folder: Path, marker: Path) -> Path:
    """A SavedModel whose serving signature writes the marker with tf.io.write_file, as a crafted one could."""
    import tensorflow as tf

    class Writer(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones([64, 10]))

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="x")])
        def serve(self, x):
            tf.io.write_file(str(marker), "ran")
            return {"y": tf.matmul(x, self.w)}

    module = Writer()
    path = folder / "saved"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_savedmodel_is_refused_before_its_graph_runs(tmp_path, dry_run):
    pytest.importorskip("tensorflow", reason="the [tf] extra is not installed")
    marker = tmp_path / "pwned"
    model = _marker_savedmodel(tmp_path, marker)
    data = tmp_path / "calibration.npz"
    np.savez(data, x=np.random.default_rng(0).random((8, 64), dtype=np.float32))
    flags = ["--dry-run"] if dry_run else []
    line = _refused(run_cli("quantize", model, "-c", data, "-o", tmp_path / "out", "-q", *flags), marker, "SavedModel")
    assert ".keras" in line
    if dry_run:  # the same model with the flag: the graph runs (the conversion check), which is the user's choice
        trusted = run_cli("quantize", model, "-c", data, "-o", tmp_path / "out", "--dry-run", "--trust-model-code")
        assert marker.exists(), trusted.explain()
