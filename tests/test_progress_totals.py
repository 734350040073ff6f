"""Progress bars tell the truth: a bar with a total never counts past it, a bar whose end is not known in
advance (latency: until stable or out of time) has no total, and long steps advance as they go."""

from __future__ import annotations

import io

import numpy as np
from conftest import DIGITS_CALIBRATION, DIGITS_EVAL, DIGITS_MODEL, digits_recipe

from modelforge.passes.base import Progress


class RecordingProgress(Progress):
    def __init__(self) -> None:
        self.tasks: list[dict] = []

    def start(self, description: str, total: int | None) -> None:
        self.tasks.append({"description": description, "total": total, "done": 0, "advances": 0})

    def advance(self, amount: int = 1) -> None:
        self.tasks[-1]["done"] += amount
        self.tasks[-1]["advances"] += 1


def test_no_bar_counts_past_its_total_in_a_run(tmp_path):
    from modelforge.pipeline import run_recipe
    from modelforge.recipe import recipe_from_dict

    recipe = recipe_from_dict(digits_recipe(tmp_path / "out", gates={"min_cosine": 0.9}, cache=False))
    progress = RecordingProgress()
    run_recipe(recipe, progress)

    for task in progress.tasks:
        if task["total"] is not None:
            assert task["done"] <= task["total"], task
    latency = [t for t in progress.tasks if t["description"].startswith("Measuring latency")]
    assert latency and all(t["total"] is None and t["done"] > 0 for t in latency), latency
    with np.load(DIGITS_EVAL) as data:
        eval_samples = len(data["image"])
    evaluating = next(t for t in progress.tasks if t["description"] == "Evaluating")
    assert evaluating["done"] == evaluating["total"] == eval_samples
    # The fallback (on: a gate is set) measures the float model batch by batch, with a total.
    float_model = next(t for t in progress.tasks if t["description"].startswith("Measuring the float model"))
    assert float_model["total"] == eval_samples and float_model["done"] == eval_samples, float_model
    assert float_model["advances"] > 1


def test_float_reference_advances_per_batch():
    from modelforge.data import bind, open_dataset
    from modelforge.loader import load_model
    from modelforge.quantization.fallback import OutputJudge
    from modelforge.recipe import DataSource

    model = load_model(DIGITS_MODEL)
    data = bind(open_dataset(DataSource(path=DIGITS_CALIBRATION)), model.io, "calibration data")
    steps: list[int] = []
    OutputJudge(model.path, data, 32, 1, "quantize", advance=steps.append)
    assert sum(steps) == data.num_samples and len(steps) == -(-data.num_samples // 32)


def test_bars_without_a_total_show_a_plain_count(monkeypatch):
    from rich.console import Console

    from modelforge.cli import console

    sink = io.StringIO()
    monkeypatch.setattr(console, "err_console", Console(file=sink, width=120, force_terminal=False))
    bar = console.RichProgress()
    bar.start("Measuring latency, batch 1, runs per model", None)
    bar.advance(48)
    bar.stop()
    bar.start("Evaluating", 540)
    bar.advance(540)
    bar.stop()
    text = sink.getvalue()
    assert "48" in text and "/?" not in text, text
    assert "540/540" in text, text
