"""What an export works with and gives back, and the parts every target shares.

`ExportJob` is the run's side of an export in plain data and callables (the work folder, the data sets, the
seed, threads, where the output goes, a Progress channel); `ExportResult` is the model handed on plus the figures
for the stage record. The engines take these, never a pass context, so they run and are tested without the
pipeline. Shared here: the TensorRT optimization profiles and the drift baseline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.progress import Progress

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.export.config import ExportConfig
    from modelforge.model.artifact import IOSpec, ModelArtifact

# The figures an export adds to its stage record, in the order they were taken.
Record = dict[str, Any]


@dataclass
class ExportJob:
    """The run's inputs to an export. `output_dir`: the folder the run writes (None when run on its own);
    `measure_latency` off skips the Triton batch sweep unless a memory budget needs it."""

    workdir: Path
    calibration: BoundDataset | None = None
    evaluation: BoundDataset | None = None
    seed: int = 0
    threads: int | None = None
    measure_latency: bool = True
    output_dir: Path | None = None
    progress: Progress = field(default_factory=Progress)

    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Callable[[int], None]]:
        """A progress task around a step; yields the advance callable."""
        return self.progress.task(description, total)


@dataclass
class ExportResult:
    """The model handed on (unchanged ONNX, the target's files as side outputs) and the stage's figures."""

    artifact: ModelArtifact
    record: Record


def profiles(io: IOSpec, config: ExportConfig):
    """TensorRT optimization profiles (min, opt, max shapes per input) from the config's batches and dims."""
    from modelforge.export.shapes import profile_shapes

    return profile_shapes(io, config.min_batch, config.opt_batch, config.max_batch, config.dims)


def drift_baseline(model_path: Path, io: IOSpec, job: ExportJob, record: Record) -> dict[str, Any] | None:
    """The drift baseline (None, said in one line, when the run has no data to take it from)."""
    if job.calibration is None and job.evaluation is None:
        record["baseline_stats"] = None
        job.progress.log("no drift baseline: no data (pass --calibration or --eval-data to record one)")
        return None
    from modelforge.monitoring.baseline import build_baseline
    from modelforge.runtimes.onnxruntime import fixed_batch_size

    with job.task("Recording baseline statistics for drift"):
        return build_baseline(
            model_path,
            job.calibration,
            job.evaluation,
            seed=job.seed,
            threads=job.threads,
            batch_size=fixed_batch_size(io) or 64,
        )


def write_baseline(baseline: dict[str, Any], folder: Path, root: Path | None = None) -> str:
    """Write baseline_stats.json into `folder` (kept inside `root` when given); returns its file name."""
    from modelforge.monitoring.baseline import BASELINE_NAME
    from modelforge.safe_files import write_text

    write_text(folder / BASELINE_NAME, json.dumps(baseline, indent=1) + "\n", root)
    return BASELINE_NAME
