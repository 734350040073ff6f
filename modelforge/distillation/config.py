"""What a distillation run is configured with: the student (a file, a factory, or the narrowed teacher), the loss,
the hints, the teacher cache, the label-only baseline, the training and where it checkpoints. The `distill`
pass's Config (modelforge.passes.distill) is this model as a PassConfig."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelforge.training.config import TrainConfig


class HintPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teacher: str = Field(description="Teacher layer name (as in the model, e.g. block2).")
    student: str = Field(description="Student layer name whose output is projected (1x1) onto the teacher's.")


class DistillConfig(BaseModel):
    # No docstring: the recipe's JSON Schema (modelforge schema) shows a class docstring as the description.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    student: Path | None = Field(
        None, description="The student as a torch.export program (.pt2), or a Keras file for a Keras teacher."
    )
    student_factory: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'module:function' building the student nn.Module (fresh weights unless student_weights).",
    )
    student_weights: Path | None = Field(None, description="student_factory: .safetensors or a state dict.")
    student_from_teacher: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Derive the student from the teacher: keep this share of the channels of every layer "
        "(structured pruning; 0.5 gives about a quarter of the parameters).",
    )
    student_layers: int | list[int] | None = Field(
        None,
        description="A Hugging Face encoder teacher: the student is the teacher with fewer transformer layers "
        "(DistilBERT's way), weights copied: a count (kept evenly spread, first and last included, e.g. 12 -> 6 "
        "keeps 0,2,4,7,9,11) or the teacher layer indices to keep. Hidden-state hints map each student layer to "
        "the teacher layer it was copied from (hint_weight 0 turns them off).",
    )
    loss: Literal["kl", "mse", "cosine"] = Field(
        "kl",
        description="kl: soft targets at `temperature` (x T^2) against the labels, weighted by alpha; mse or "
        "cosine: match the teacher's outputs (regression or embedding teachers).",
    )
    temperature: float = Field(4.0, gt=0, description="kl: softmax temperature of the soft targets.")
    alpha: float = Field(
        0.9, ge=0, le=1, description="Weight of the teacher term; 1 - alpha goes to cross-entropy on the labels."
    )
    hints: list[HintPair] = Field(
        default_factory=list,
        description="Intermediate-feature pairs: an MSE term between each teacher layer's output and the "
        "student layer's output through a learned 1x1 projection.",
    )
    hint_weight: float = Field(1.0, ge=0, description="Weight of each hint term.")
    cache_teacher: bool = Field(
        True,
        description="Run the teacher once per training sample and reuse its outputs every epoch (only without "
        "augmentation and hints, where they would not change).",
    )
    baseline: bool | None = Field(
        None,
        description="Also train the same student on labels alone with the same budget, for the report "
        "(default: on when training samples x epochs <= 500,000).",
    )
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=10, lr=3e-3), description="Training settings."
    )
    checkpoint_dir: Path | None = Field(
        None,
        description="Where epochs are checkpointed, and kept (default: the cache, keyed by the output folder, "
        "removed once the pass is done; the output's checkpoints/ keeps the student's best.pt and last.pt).",
    )
    resume: bool = Field(False, description="Continue from the checkpoints an interrupted run left.")

    @model_validator(mode="after")
    def _one_student(self) -> DistillConfig:
        given = [
            self.student is not None,
            self.student_factory is not None,
            self.student_from_teacher is not None,
            self.student_layers is not None,
        ]
        if sum(given) != 1:
            raise ValueError(
                "give exactly one student: student (.pt2), student_factory, student_from_teacher, or student_layers"
            )
        layers = self.student_layers
        if isinstance(layers, int) and layers < 1:
            raise ValueError("student_layers must keep at least 1 layer")
        if isinstance(layers, list) and (not layers or min(layers) < 0 or len(set(layers)) != len(layers)):
            raise ValueError("student_layers as a list: distinct teacher layer indices (0-based), at least one")
        if self.student_weights is not None and self.student_factory is None:
            raise ValueError("student_weights goes with student_factory")
        if self.train.epochs < 1:  # zero epochs would ship the untrained student
            raise ValueError("train.epochs must be at least 1: with 0 epochs the student is never trained")
        return self


# The label-only baseline runs by default when the run is this small (training samples x epochs).
BASELINE_AUTO_LIMIT = 500_000


@dataclass(frozen=True)
class DistillResult:
    """What a distillation made: the student's file, the checkpoints the output keeps, the stage's figures, and
    (a Keras student) which Keras saved it."""

    path: Path
    figures: dict[str, Any]
    checkpoints: tuple[Path, ...] = ()
    keras_flavor: str | None = None
