"""A decoder language model folder to ONNX with a KV cache, by onnxruntime-genai's model builder.

The builder runs in a child process (modelforge.convert.genai_build), offline, in float32: modelforge quantizes
the weights itself afterwards, so its own settings, sensitivity fallback and gates apply. The result is a
folder onnxruntime-genai runs as it is: model.onnx (+ model.onnx.data), genai_config.json and the tokenizer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modelforge.errors import PassError

BUILD_TIMEOUT_S = 3600


def export_causal_lm(folder: Path, out: Path, cache: Path) -> Path:
    """Export `folder` to `out` (fp32, CPU); returns out/model.onnx. A builder failure is a pass failure (exit 3)."""
    from modelforge.optional import require

    require("onnxruntime_genai", "exporting language models with a KV cache")
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "modelforge.convert.genai_build", "-i", str(folder), "-o", str(out)]
    command += ["-p", "fp32", "-e", "cpu", "-c", str(cache)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "USE_TF": "0"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise PassError("export", f"onnxruntime-genai's model builder took over {BUILD_TIMEOUT_S} s") from None
    model = out / "model.onnx"
    if done.returncode != 0 or not model.is_file() or not (out / "genai_config.json").is_file():
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise PassError(
            "export", f"onnxruntime-genai's model builder failed: {lines[-1] if lines else done.returncode}"
        )
    return model
