"""One quantized language model built for one runtime (onnxruntime-genai or OpenVINO), before it is timed: what
`--target cpu/openvino` ship and what `--target auto` chooses between."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Held-out tokens scored (perplexity, KL, agreement), and calibration tokens the sensitivity ranking uses.
EVAL_TOKENS = 4096
CALIBRATION_TOKENS = 512
GPTQ_TOKENS = 1024
# NNCF's calibration dataset on OpenVINO (AWQ, scale estimation, GPTQ, data-aware ratio): windows of these tokens.
OV_CALIBRATION_TOKENS = 2048
# Generation speed: prompt tokens, new tokens, interleaved rounds.
PROMPT_TOKENS, NEW_TOKENS, SPEED_ROUNDS = 128, 64, 3


@dataclass
class LMCandidate:
    runtime: str  # "onnxruntime" or "openvino"
    folder: Path  # the result, a folder its runtime runs as it is
    baseline: Path  # the float32 export of the same runtime (the speed and size reference)
    model_file: str  # the result's model file in `folder` (model.onnx, openvino_model.xml)
    baseline_perplexity: float
    metrics: dict[str, float]  # perplexity, token_kl, top1_agreement, tokens
    quant_record: dict[str, Any]
    stages: list[dict[str, Any]]
    runner: Callable[[Path, int | None], Any]  # folder, threads -> something with once(prompt, new_tokens)
    size_of: Callable[[Path], int]

    def size_bytes(self) -> tuple[int, int]:
        return self.size_of(self.baseline), self.size_of(self.folder)

    def move_into(self, dest: Path) -> None:
        """The result's files into `dest` (the staging folder), when it was built elsewhere (target auto)."""
        for item in sorted(self.folder.iterdir()):
            if item.is_file() and not item.is_symlink():
                shutil.move(str(item), dest / item.name)
        self.folder = dest


def stage_record(name: str, started: float, input_format: str, output_format: str, metrics: dict[str, Any]) -> dict:
    """One stage of a language-model run as report.json's `stages` hold them (started: time.perf_counter())."""
    import time

    return {
        "name": name,
        "pass": name,
        "seconds": time.perf_counter() - started,
        "input_format": input_format,
        "output_format": output_format,
        "metrics": metrics,
    }
