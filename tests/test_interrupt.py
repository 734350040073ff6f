"""Ctrl-C in the middle of a run leaves nothing half-written and an existing output untouched."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "calibration" / "digits"


def test_interrupted_run_leaves_no_output(tmp_path):
    # A calibration set large enough that the interrupt lands mid-run.
    images = np.load(DIGITS / "calibration.npz")["image"]
    np.savez(tmp_path / "big.npz", image=np.tile(images, (400, 1, 1, 1)))
    recipe = {
        "model": str(DIGITS / "model.onnx"),
        "data": {"calibration": str(tmp_path / "big.npz"), "eval_data": str(DIGITS / "eval.npz")},
        "passes": ["quantize"],
        "evaluate": {"latency": {"threads": 1}},
        "output": str(tmp_path / "out"),
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    process = subprocess.Popen(
        [sys.executable, "-m", "modelforge", "run", str(tmp_path / "recipe.yaml"), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    # Wait until the run is under way: its hidden staging folder appears beside the output.
    while time.time() < deadline and not list(tmp_path.glob(".out.partial-*")):
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz", "recipe.yaml"]
