"""Without the [tf] extra, a Keras model or a .tflite file is a one-line exit-2 error naming the pip command.

TensorFlow is made unimportable in the child process (`sys.modules[name] = None`, Python's own way to make an
import fail), so this runs the real CLI whether or not the extra is installed here. Fast: nothing heavy loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from conftest import cli_env

BLOCK = "tensorflow tf_keras keras tf2onnx h5py ai_edge_litert tensorflow_model_optimization"


def _run_without_tf(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {BLOCK.split()!r}: sys.modules[name] = None\n"
        f"sys.argv = ['modelforge', *{list(args)!r}]\n"
        "from modelforge.cli.app import main\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)


def test_keras_model_without_the_tf_extra(tmp_path: Path):
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as archive:  # the detectable shape of a Keras 3 archive
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", "{}")
    np.savez(tmp_path / "calib.npz", image=np.zeros((4, 8, 8, 1), np.float32))
    proc = _run_without_tf(
        "quantize", str(model), "--calibration", str(tmp_path / "calib.npz"), "-o", str(tmp_path / "o")
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs tensorflow" in lines[0] and "pip install 'modelforge[tf]'" in lines[0], lines
    assert not (tmp_path / "o").exists()


def test_h5_that_is_not_hdf5_is_bad_input(tmp_path: Path):
    model = tmp_path / "model.h5"
    model.write_bytes(b"not hdf5")
    proc = _run_without_tf("inspect", str(model))
    assert proc.returncode == 2, proc.stderr
    assert "not an HDF5 file" in proc.stderr
