"""Ctrl-C in the middle of a run leaves nothing half-written and an existing output untouched."""

from __future__ import annotations

import os
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
    work = tmp_path / "tmp"
    work.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelforge", "run", str(tmp_path / "recipe.yaml"), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(work)},
    )
    deadline = time.time() + 120
    # Interrupt as soon as the quantize pass is under way (its stage folder exists, the staging folder beside the
    # output too): calibrating on 100k samples still lies ahead, so the signal lands mid-run on any machine. A
    # fixed sleep instead would let a fast machine finish first.
    while time.time() < deadline and not (list(work.glob("modelforge-work-*/01-quantize"))
                                          and list(tmp_path.glob(".out.partial-*"))):  # fmt: skip
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz", "recipe.yaml", "tmp"]
    assert not list(work.glob("modelforge-work-*"))  # the work folder went too
