"""The pass contract: a name, the formats it accepts and produces, a typed Config, and one `run`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from modelforge.progress import Progress  # re-exported: plugins import it from here

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.model.artifact import ModelArtifact
    from modelforge.recipe.schema import GatesConfig


class PassConfig(BaseModel):
    """Base of every pass Config: typed, documented fields; unknown keys, NaN and infinity are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass
class PassContext:
    """What a pass may use: a private work folder, the data sets, the seed, and a channel to report.

    `evaluation` is the data the run's gates are judged on, and `gates` the recipe's gates: a pass that can
    trade speed for accuracy (quantize's accuracy-aware fallback) aims at exactly what the run is judged by.
    Likewise a pass that measures speed (quantize's speed-aware search) does so at the batch size and thread
    count the run reports latency at; `measure_latency` is off when the recipe skips latency.
    `train` holds the labelled samples of passes that train (pruning's fine-tuning, distillation).
    """

    workdir: Path
    seed: int = 0
    calibration: BoundDataset | None = None
    train: BoundDataset | None = None
    evaluation: BoundDataset | None = None
    gates: GatesConfig | None = None
    progress: Progress = field(default_factory=Progress)
    measure_latency: bool = True
    latency_batch_size: int = 1
    threads: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    # The existing output folder this run adds to (a pass whose extends_output says so; no built-in pass does
    # since a Triton repository is named with export's `repository`); None when the output is new or replaced.
    extending_output: Path | None = None
    # The output folder the run writes (None for a pass run on its own): keys where training passes checkpoint.
    output_dir: Path | None = None

    def record(self, key: str, value: Any) -> None:
        """Attach a figure to this pass's stage record in the report."""
        self.metrics[key] = value

    def task(self, description: str, total: int | None = None) -> AbstractContextManager[Callable[[int], None]]:
        """A progress bar around one step of the pass; yields its advance callable."""
        return self.progress.task(description, total)


class Pass:
    """Subclass, set the class attributes, register with `@register`, implement `run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    accepts: ClassVar[tuple[str, ...]] = ("onnx",)
    produces: ClassVar[str] = "onnx"
    needs_calibration: ClassVar[bool] = False
    needs_train_data: ClassVar[bool] = False
    Config: ClassVar[type[PassConfig]] = PassConfig
    # True: the pass makes sense with no data at all (an export of a model as it is); a recipe of only such
    # passes runs without data, its evaluation skipped.
    runs_without_data: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True  # False: the stage cache never stores or reuses this pass's result

    @classmethod
    def extends_output(cls, config: PassConfig, out: Path) -> bool:
        """True when this pass adds to the existing output folder `out` (no --force needed; nothing is lost)."""
        return False

    def __init__(self, config: PassConfig):
        self.config = config

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        raise NotImplementedError
