"""The finalists: the unpruned model and each fine-tuned survivor, built in every precision x runtime that passed
the latency screen (INT8 through the quantize flow itself, with its scheme and accuracy fallback), their accuracy
measured on the eval data against the original, then every finalist timed interleaved in one process on this
machine (as `--target auto` does: same input, batch and threads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.errors import PassError
from modelforge.measure.profile import judged_value
from modelforge.search.screen import time_interleaved
from modelforge.search.space import Form


@dataclass
class Candidate:
    """One finalist: a trained (or the original) architecture in one form, and what it measured."""

    form: Form
    fine_tune: str  # none | kd | labels
    epochs: int | None
    path: Path | None = None
    accuracy: float | None = None
    accuracy_drop_pp: float | None = None
    p50: float | None = None
    p99: float | None = None
    p99_bound: float | None = None  # its 95% upper confidence bound: what the SLO is judged on
    size_bytes: int | None = None
    misses: list[str] = field(default_factory=list)
    lost: str | None = None  # lost_because
    detail: str = ""
    quantize: dict[str, Any] | None = None  # the quantize pass config that builds it (None: fp32 onnxruntime)

    @property
    def id(self) -> str:
        return f"p{self.form.ratio:.2f}-{self.fine_tune}-{self.form.precision}-{self.form.runtime}"

    @property
    def changes(self) -> int:
        """How far from the original: pruning, fine-tuning, precision, runtime (ties go to fewer)."""
        return sum(
            (
                self.form.ratio > 0,
                self.fine_tune != "none",
                self.form.precision != "fp32",
                self.form.runtime != "onnxruntime",
            )
        )


def quantize_config(form: Form) -> dict[str, Any] | None:
    """The quantize pass config that serves `form` (the search measures speed itself: no speed search)."""
    if form.runtime == "onnxruntime" and form.precision == "fp32":
        return None
    if form.runtime == "openvino":
        return {"target": "openvino", "precision": form.precision, "speed_aware": False}
    return {"target": "cpu", "precision": "int8", "speed_aware": False}


def build(
    candidate: Candidate, onnx_path: Path, *, calibration, evaluation, max_drop, batch, threads, workdir, progress
) -> None:
    """The candidate's model file, through the quantize flow where it is not fp32 on onnxruntime."""
    from modelforge.model.onnx_model import onnx_artifact
    from modelforge.quantization.config import QuantizeConfig
    from modelforge.quantization.fallback import Budget
    from modelforge.quantization.state import LatencySettings, QuantizeInputs
    from modelforge.quantization.target import quantize

    settings = quantize_config(candidate.form)
    candidate.quantize = settings
    if settings is None:
        candidate.path = onnx_path
        return
    folder = workdir / candidate.id
    folder.mkdir(parents=True, exist_ok=True)
    inputs = QuantizeInputs(
        workdir=folder,
        calibration=calibration,
        evaluation=evaluation,
        budget=Budget(max_accuracy_drop=max_drop),  # as the replayed quantize pass gets it from the gates
        latency=LatencySettings(False, batch, threads),
        progress=progress,
    )
    result = quantize(onnx_artifact(onnx_path), QuantizeConfig(**settings), inputs, name="quantize")
    candidate.path = result.artifact.path


def assess(candidates: list[Candidate], judge) -> None:
    """Accuracy of each built candidate against the original on the eval data (judge: an OutputJudge)."""
    for candidate in candidates:
        if candidate.path is None or candidate.accuracy is not None or candidate.lost is not None:
            continue
        judge.runtime, judge.precision = candidate.form.runtime, candidate.form.precision
        try:
            metrics = judge.measure(candidate.path)
        except PassError as exc:
            candidate.lost, candidate.detail = "failed", f"cannot run: {exc.message}"[:200]
            continue
        candidate.accuracy = metrics.get("accuracy_result")
        candidate.accuracy_drop_pp = metrics.get("accuracy_drop_pp")
        candidate.size_bytes = _size(candidate.path)


def time_all(
    candidates: list[Candidate], *, baseline_onnx: Path, feeds_data, batch: int, threads: int, settings: dict, progress
) -> dict[str, Any]:
    """Every finalist and the original timed interleaved in this process; returns the original's stats."""
    ready = [c for c in candidates if c.path is not None and c.lost is None]
    subjects = [("original", baseline_onnx, "onnxruntime", "fp32")]
    subjects += [(c.id, c.path, c.form.runtime, c.form.precision) for c in ready]
    stats = time_interleaved(subjects, feeds_data, batch, threads, settings, progress)
    for candidate in ready:
        measured = stats[candidate.id]
        candidate.p50, candidate.p99 = measured["p50_ms"], measured["p99_ms"]
        candidate.p99_bound = judged_value(measured, "p99_ms")
    return stats["original"]


def _size(path: Path) -> int:
    """Bytes of the model as served: the file plus its external data beside it, if any."""
    from modelforge.model.artifact import ModelArtifact

    try:
        return sum(f.stat().st_size for f in ModelArtifact(path=path, format="onnx").files())
    except (OSError, ValueError):
        return path.stat().st_size
