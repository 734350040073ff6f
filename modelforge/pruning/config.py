"""What a pruning run is configured with: the method, the amount, the schedule, the layers it leaves alone, the
fine-tuning, and where it checkpoints. The `prune` pass's Config (modelforge.passes.prune) is this model as a
PassConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelforge.training.config import TrainConfig


class PruneConfig(BaseModel):
    # No docstring: the recipe's JSON Schema (modelforge schema) shows a class docstring as the description.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: Literal["magnitude", "structured", "2:4"] = Field(
        "structured",
        description="structured: remove whole channels (smaller, faster dense model); magnitude: zero the "
        "smallest weights (compresses, no CPU speed-up); 2:4: two zeros in every four weights (NVIDIA sparse "
        "tensor cores only).",
    )
    sparsity: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="magnitude: share of weights zeroed; structured: share of channels removed per layer "
        "(default 0.5, unless target_macs is set).",
    )
    head_sparsity: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Hugging Face encoders: share of attention heads removed per layer (default: sparsity, which "
        "is then the share of FFN neurons removed).",
    )
    target_macs: float | None = Field(
        None, gt=0, lt=1, description="structured: remove channels until MACs <= this share of the original's."
    )
    scope: Literal["global", "layer"] = Field(
        "global", description="magnitude: one |w| threshold across layers (global) or the same share per layer."
    )
    importance: Literal["l1", "l2", "taylor", "bn-scale"] = Field(
        "l1", description="structured: channel importance (L1/L2 weight norm, first-order Taylor, BatchNorm scale)."
    )
    schedule: Literal["one-shot", "gradual"] = Field(
        "one-shot",
        description="one-shot: prune once, then fine-tune; gradual: `steps` steps on a polynomial "
        "(cubic) schedule with `step_epochs` of fine-tuning between them.",
    )
    steps: int = Field(4, ge=1, description="gradual: number of pruning steps.")
    step_epochs: int = Field(1, ge=0, description="gradual: fine-tuning epochs after each step but the last.")
    skip_layers: list[str] = Field(
        default_factory=list, description="Layer names (as in the model, e.g. features.0) never pruned."
    )
    prune_first_conv: bool = Field(False, description="Also prune the first convolution (skipped by default).")
    prune_classifier: bool = Field(False, description="Also prune the last linear layer (skipped by default).")
    round_to: int | None = Field(None, gt=0, description="structured: keep channel counts multiples of this.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Fine-tuning settings.")
    checkpoint_dir: Path | None = Field(
        None,
        description="Where steps and epochs are checkpointed, and kept (default: the cache, keyed by the output "
        "folder, removed once the pass is done; the output's checkpoints/ keeps the final best.pt and last.pt).",
    )
    resume: bool = Field(False, description="Continue from the checkpoints an interrupted run left.")

    @model_validator(mode="after")
    def _amount(self) -> PruneConfig:
        if self.method == "structured":
            if self.sparsity is not None and self.target_macs is not None:
                raise ValueError("give sparsity or target_macs, not both")
            if self.sparsity is None and self.target_macs is None:
                self.sparsity = 0.5
        elif self.target_macs is not None:
            raise ValueError("target_macs applies to structured pruning only")
        elif self.method == "magnitude" and self.sparsity is None:
            self.sparsity = 0.5
        return self
