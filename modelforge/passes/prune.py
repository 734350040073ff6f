"""`prune`: magnitude (unstructured), structured channel or 2:4 pruning of a PyTorch model, with fine-tuning;
Keras 2 models are pruned with TF-MOT (magnitude, 2:4) in modelforge.pruning.tensorflow.

Accepts a `.pt2` program (rebuilt into real nn layers, modelforge.model.torch.rebuild) or a factory-built module;
produces a `.pt2` program. The pipeline converts it to ONNX for the evaluation and for quantization after it.
The machinery lives in modelforge.pruning and modelforge.training.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassConfig, PassContext
from modelforge.training.config import TrainConfig


class PruneConfig(PassConfig):
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


@register
class Prune(Pass):
    name = "prune"
    description = (
        "Prune a PyTorch model (structured channels, magnitude or 2:4) or a Keras 2 model (TF-MOT), and fine-tune it."
    )
    accepts = ("torch-export", "torch-module", "keras")
    produces = "torch-export"
    produces_by_input = {"keras": "keras"}  # Keras models are pruned with TF-MOT and stay Keras (model.h5)
    needs_train_data = True
    Config = PruneConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        if artifact.format == "keras":
            return self._run_keras(artifact, ctx)
        from modelforge.model.torch.loading import load_module
        from modelforge.pruning.run import run_pruning

        with warnings.catch_warnings():  # torch's deprecation chatter: a pass never prints
            warnings.simplefilter("ignore")
            module = load_module(artifact)
            path, record = run_pruning(module, self.config, ctx, ctx.workdir)
        from modelforge.training.checkpoints import keep_final, remove_default

        folder, named = Path(record["checkpoints"]), self.config.checkpoint_dir is not None
        final_step = folder / f"step-{len(record['steps'])}"
        kept = keep_final(final_step, ("best.pt", "last.pt"), ctx.workdir / "kept", named=named)
        remove_default(folder, named)
        if not named:  # the cache's folder is gone: the output's checkpoints/ holds what is kept
            record["checkpoints"] = "checkpoints/ in the output" if kept else None
        for key, value in record.items():
            ctx.record(key, value)
        return ModelArtifact(path=path, format="torch-export", io=artifact.io, checkpoints=tuple(Path(k) for k in kept))

    @classmethod
    def check_source(cls, path: Path, fmt: str, config: dict) -> None:
        """Before any work: a Keras source TF-MOT cannot prune (Keras 3, SavedModel, structured) is refused."""
        if fmt in ("keras", "savedmodel"):
            from modelforge.pruning.tensorflow import check_keras_source

            check_keras_source(path, fmt, config.get("method", "structured"), bool(config.get("resume")))

    def _run_keras(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        from modelforge.pruning.tensorflow import prune_keras

        path, record = prune_keras(artifact, self.config, ctx)
        for key, value in record.items():
            ctx.record(key, value)
        return ModelArtifact(path=path, format="keras", io=artifact.io, keras_flavor="tf_keras")
