"""Progress bars tell the truth: a bar with a total never counts past it, a bar whose end is not known in
advance (latency: until stable or out of time) has no total, and long steps advance as they go."""

from __future__ import annotations

import io
import re

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
    from modelforge.recipe.load import recipe_from_dict
    from modelforge.run.runner import run_recipe

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
    from modelforge.model.loader import load_model
    from modelforge.quantization.fallback import OutputJudge
    from modelforge.recipe.schema import DataSource

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


def test_a_step_of_unknown_length_shows_no_bar_and_no_zero(monkeypatch):
    from rich.console import Console

    from modelforge.cli import console

    sink = io.StringIO()
    monkeypatch.setattr(console, "err_console", Console(file=sink, width=80, force_terminal=False))
    bar = console.RichProgress()
    bar.start("Recording baseline statistics for drift", None)
    bar.stop()
    line = next(x for x in sink.getvalue().splitlines() if x.startswith("Recording"))
    assert "━" not in line and not _bars_counting_zero(line), line
    assert re.fullmatch(r"Recording baseline statistics for drift\s+\d+:\d\d:\d\d", line.strip()), line


def _bars_counting_zero(stderr: str) -> list[str]:
    """Bar lines (rich, not a terminal, 80 columns) whose count is a bare 0: a bar over nothing."""
    return [line for line in stderr.splitlines() if re.search(r"(━|\s)0\s+\d+:\d\d:\d\d\s*$", line)]


def test_no_bar_counts_zero_in_a_speed_aware_quantize_and_a_triton_export(tmp_path):
    """Steps of unknown length (the final speed check, the drift baseline) show their name and time, not an empty
    bar over "0"; every bar with a count counts something. Rendered as CI logs see it: not a tty, 80 columns."""
    from conftest import cli_env, run_cli

    env = cli_env(COLUMNS="80")
    quantize = run_cli(
        "quantize", DIGITS_MODEL, "-c", DIGITS_CALIBRATION, "-e", DIGITS_EVAL, "-o", tmp_path / "int8",
        "--threads", "1", env=env,
    )  # fmt: skip
    assert quantize.returncode == 0, quantize.explain()
    assert "Calibrating (minmax)" in quantize.stderr, quantize.stderr  # bars rendered (which ones: the machine's)
    export = run_cli(
        "export", DIGITS_MODEL, "--target", "triton", "--name", "digits", "-c", DIGITS_CALIBRATION,
        "-o", tmp_path / "triton", env=env,
    )  # fmt: skip
    assert export.returncode == 0, export.explain()
    assert "Recording baseline statistics for drift" in export.stderr, export.stderr
    for result in (quantize, export):
        assert not _bars_counting_zero(result.stderr), result.stderr
