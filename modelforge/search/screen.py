"""Latency before training: each prune ratio is pruned structurally (no fine-tuning: the architecture, not the
weights, sets the speed), converted to ONNX, built in every precision x runtime (INT8 from a small calibration
slice: its speed does not depend on how well it is calibrated) and all forms are timed interleaved in one
process at the run's batch size and threads. What cannot meet the latency goal is dropped before any epoch is
spent; a goal below the fastest form is reported at once (exit 1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelforge.errors import EXIT_GATE_FAILED, ModelforgeError
from modelforge.search.space import Form

# Forms within this share above the SLO survive the screen: its short measurement is re-done for the finalists.
SCREEN_SLACK = 1.10
QUICK_CALIBRATION_SAMPLES = 64


class GoalUnreachable(ModelforgeError):
    """No form can meet the latency goal, however pruned: exit 1, said before any training."""

    exit_code = EXIT_GATE_FAILED


@dataclass
class Goal:
    """The latency constraints, resolved against the measured original."""

    latency_p99_ms: float | None
    speedup: float | None

    def misses(self, p50: float, p99: float, base_p50: float, slack: float = 1.0, p99_label: str = "p99") -> str | None:
        """Why these figures miss the goal (None: they meet it); `p99` may be an upper bound, `p99_label` says."""
        if self.latency_p99_ms is not None and p99 > self.latency_p99_ms * slack:
            return f"{p99_label} {p99:.3g} ms > SLO {self.latency_p99_ms:g} ms"
        if self.speedup is not None and base_p50 / p50 < self.speedup / slack:
            return f"speed-up {base_p50 / p50:.2f}x < {self.speedup:g}x"
        return None


@dataclass
class Screened:
    form: Form
    path: Path  # the model file the form runs
    p50: float | None = None
    p99: float | None = None
    size_bytes: int | None = None
    dropped: str | None = None  # why it cannot meet the goal


def pruned_onnx(module_factory: Callable[[], Any], example: tuple, ratio: float, folder: Path, to_onnx) -> Path:
    """The architecture pruned at `ratio` (weights as pruned, not fine-tuned), as ONNX."""
    import warnings

    from modelforge.distillation.students import narrowed_teacher
    from modelforge.model.torch.export import save_program

    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = narrowed_teacher(module_factory(), 1.0 - ratio, example)
        program = save_program(module, example, folder / "model.pt2")
    return to_onnx(program, folder / "onnx")


def quick_int8(onnx_path: Path, runtime: str, calibration, folder: Path) -> Path:
    """An INT8 form for timing only: the quantize flow on a small slice, no speed search, no fallback."""
    from modelforge.model.onnx_model import onnx_artifact
    from modelforge.quantization.config import QuantizeConfig
    from modelforge.quantization.flow import quantize_int8
    from modelforge.quantization.state import LatencySettings, QuantizeInputs

    folder.mkdir(parents=True, exist_ok=True)
    config = QuantizeConfig(
        target="openvino" if runtime == "openvino" else "cpu", method="minmax", speed_aware=False, fallback=False
    )
    inputs = QuantizeInputs(
        workdir=folder,
        calibration=calibration.window(0, min(QUICK_CALIBRATION_SAMPLES, calibration.num_samples)),
        latency=LatencySettings(measure=False),
    )
    return quantize_int8(onnx_artifact(onnx_path), config, inputs).artifact.path


def time_interleaved(
    subjects: list[tuple[str, Path, str, str]], feeds_data, batch: int, threads: int, measure: dict, progress
) -> dict[str, dict[str, Any]]:
    """(name, file, runtime, precision) -> latency stats, every model timed in turn in this process."""
    from modelforge.evaluate.evaluator import latency_feeds
    from modelforge.measure.profile import Subject, batch_sweep
    from modelforge.runtimes.base import open_backend

    feeds = latency_feeds(feeds_data, batch)
    opened = [
        Subject(
            name,
            open_backend(path, runtime=runtime, precision=precision, threads=threads, stage="optimize"),
            lambda _size, feeds=feeds: feeds,
        )
        for name, path, runtime, precision in subjects
    ]
    sweep = batch_sweep(opened, [batch], progress=progress, **measure)
    return sweep[0]["stats"]


def screen(
    forms: list[Form],
    *,
    baseline_onnx: Path,
    module_factory: Callable[[], Any] | None,
    example: tuple | None,
    to_onnx: Callable[[Path, Path], Path],
    calibration,
    feeds_data,
    goal: Goal,
    batch: int,
    threads: int,
    measure: dict,
    workdir: Path,
    progress,
    final: bool = True,
) -> tuple[list[Screened], dict[str, Any]]:
    """Build and time every form (with the original, interleaved); returns them (with why each dropped) and the
    original's latency. `final`: these are the last forms to screen, so none meeting the goal is exit 1."""
    onnx_by_ratio: dict[float, Path] = {0.0: baseline_onnx}
    rows: list[Screened] = []
    progress.start("Latency screen: building each prune ratio x precision x runtime", len(forms))
    try:
        for form in forms:
            if form.ratio not in onnx_by_ratio:
                folder = workdir / f"screen-p{form.ratio:.2f}"
                onnx_by_ratio[form.ratio] = pruned_onnx(module_factory, example, form.ratio, folder, to_onnx)
            path = onnx_by_ratio[form.ratio]
            if form.precision == "int8":
                path = quick_int8(path, form.runtime, calibration, workdir / f"screen-{form.name}")
            rows.append(Screened(form, path, size_bytes=path.stat().st_size))
            progress.advance(1)
    finally:
        progress.stop()
    subjects = [("original", baseline_onnx, "onnxruntime", "fp32")]
    subjects += [(r.form.name, r.path, r.form.runtime, r.form.precision) for r in rows]
    stats = time_interleaved(subjects, feeds_data, batch, threads, measure, progress)
    base = stats["original"]
    for row in rows:
        row.p50, row.p99 = stats[row.form.name]["p50_ms"], stats[row.form.name]["p99_ms"]
        row.dropped = goal.misses(row.p50, row.p99, base["p50_ms"], SCREEN_SLACK)
    if final:
        check_reachable(rows, goal, base, batch, threads)
    return rows, base


def check_reachable(rows: list[Screened], goal: Goal, base: dict[str, Any], batch: int, threads: int) -> None:
    """GoalUnreachable (exit 1) when no screened form can meet the goal, naming the fastest."""
    if not rows or any(r.dropped is None for r in rows):
        return
    fastest = min(rows, key=lambda r: r.p99)
    wanted = (
        f"the SLO p99 {goal.latency_p99_ms:g} ms"
        if goal.latency_p99_ms is not None
        else f"a {goal.speedup:g}x speed-up"
    )
    raise GoalUnreachable(
        f"{wanted} is out of reach: the fastest candidate, {fastest.form.name}, measured p99 "
        f"{fastest.p99:.3g} ms (p50 {fastest.p50:.3g} ms; original p99 {base['p99_ms']:.3g} ms) at batch "
        f"{batch}, {threads} threads; nothing was trained",
        hint="loosen the goal or add higher --prune-ratios",
    )
