"""What one quantize run's steps share: the inputs the caller hands over, the record they fill, and the models
already parsed, so a step reuses a model another step holds instead of reading its file again.

The flow (`flow.py`) takes plain data and callbacks, never a pass context: the work folder, the data sets, the
accuracy budget (the run's gate thresholds), where latency is reported, and a `Progress` to report through.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelforge.progress import Progress
from modelforge.quantization.fallback import Budget

if TYPE_CHECKING:
    import onnx

    from modelforge.data import BoundDataset
    from modelforge.quantization.config import QuantizeConfig


@dataclass(frozen=True)
class LatencySettings:
    """Where the run reports latency: the speed search measures at the same batch size and threads.
    `measure` is off when the run skips latency (no speed search then)."""

    measure: bool = True
    batch_size: int = 1
    threads: int | None = None


@dataclass
class QuantizeInputs:
    """The data and callbacks a quantize run is given (the pass unpacks its context into this)."""

    workdir: Path
    calibration: BoundDataset | None
    evaluation: BoundDataset | None = None
    budget: Budget = field(default_factory=Budget)  # the run's accuracy gates: what the fallback aims at
    latency: LatencySettings = field(default_factory=LatencySettings)
    progress: Progress = field(default_factory=Progress)


@dataclass
class FlowState:
    """One run of the INT8 flow: its settings, inputs, stage record, and the models it holds in memory.

    `record` is the stage record (report), filled in order and revised by later steps (the dynamic candidate
    restores what its own search overwrote), hence a dict the flow owns and returns, not a write-only callback.
    `models` maps files this run wrote (or read) to their parsed form while the form still equals the file;
    only self-contained models are kept (a saved model with external data no longer holds its weights).
    """

    config: QuantizeConfig
    inputs: QuantizeInputs
    runtime: tuple[str, str]  # (runtime, precision) variants are measured on: where the target serves them
    record: dict[str, Any] = field(default_factory=dict)
    models: dict[Path, onnx.ModelProto] = field(default_factory=dict)
    name: str = "quantize"  # the pass named in errors

    @property
    def workdir(self) -> Path:
        return self.inputs.workdir

    def put(self, key: str, value: Any) -> None:
        """Attach a figure to the stage record."""
        self.record[key] = value

    def log(self, line: str) -> None:
        self.inputs.progress.log(line)

    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Callable[[int], None]]:
        """A progress bar for one step; yields its advance callback."""
        return self.inputs.progress.task(description, total)

    def keep(self, path: Path, model: onnx.ModelProto) -> None:
        """Remember `model` as the content of `path` (just written or read), when it holds all its weights."""
        if self_contained(model):
            self.models[path] = model

    def forget(self, *paths: Path) -> None:
        """The files were moved or rewritten: their parsed forms no longer stand for them."""
        for path in paths:
            self.models.pop(path, None)

    def load(self, path: Path) -> onnx.ModelProto:
        """The model in `path` with its weights: the one held in memory, else read. Callers do not change it."""
        from modelforge.model.onnx_model import load_onnx

        model = self.models.get(path)
        if model is None:
            model = load_onnx(path)
            self.keep(path, model)
        return model

    def graph(self, path: Path) -> onnx.ModelProto:
        """The model in `path` for its graph only (weights in external data stay on disk). Not changed by callers."""
        from modelforge.model.onnx_model import load_onnx

        model = self.models.get(path)
        return model if model is not None else load_onnx(path, load_external_data=False)


def self_contained(model: onnx.ModelProto) -> bool:
    """True when every weight is inside the proto (none in an external data file)."""
    import onnx

    return not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
