"""`distill`: train a small student to imitate the pipeline's model (the teacher); the student ships.

Accepts the teacher as a `.pt2` program (rebuilt into real nn layers) or a factory-built module; produces the
student as a `.pt2` program, which the pipeline converts to ONNX for the evaluation (teacher vs student, same
runtime, interleaved) and for quantization after it. The machinery lives in modelforge.distillation. A Keras
teacher (`.keras`/`.h5`) is distilled into a Keras student file instead (modelforge.distillation.tensorflow); the
student stays Keras and is converted to ONNX the same way.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassConfig, PassContext
from modelforge.training.config import TrainConfig


class HintPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teacher: str = Field(description="Teacher layer name (as in the model, e.g. block2).")
    student: str = Field(description="Student layer name whose output is projected (1x1) onto the teacher's.")


class DistillConfig(PassConfig):
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
        given = [self.student is not None, self.student_factory is not None, self.student_from_teacher is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one student: student (.pt2), student_factory, or student_from_teacher")
        if self.student_weights is not None and self.student_factory is None:
            raise ValueError("student_weights goes with student_factory")
        if self.train.epochs < 1:  # zero epochs would ship the untrained student
            raise ValueError("train.epochs must be at least 1: with 0 epochs the student is never trained")
        return self


@register
class Distill(Pass):
    name = "distill"
    description = "Distil the model (teacher) into a smaller student trained to imitate it."
    accepts = ("torch-export", "torch-module", "keras")
    produces = "torch-export"
    produces_by_input = {"keras": "keras"}  # a Keras teacher is distilled into a Keras student (model.keras/.h5)
    needs_train_data = True
    Config = DistillConfig

    def cache_fingerprint(self) -> str | None:
        """The student's bytes are part of what the stage depends on; a factory's code is not hashable (None:
        never cached)."""
        from modelforge.manifest import file_sha256

        config = self.config
        if config.student_factory is not None:
            return None
        if config.student is not None:
            return file_sha256(Path(config.student)) if Path(config.student).is_file() else None
        return ""

    @classmethod
    def check_source(cls, path: Path, fmt: str, config: dict) -> None:
        """Before any work: teacher and student in different frameworks, or PyTorch-only options for a Keras
        teacher, are refused."""
        student = config.get("student")
        keras_student = student is not None and Path(student).suffix.lower() in (".keras", ".h5", ".hdf5")
        if fmt in ("keras", "savedmodel") or keras_student:
            from modelforge.distillation.tensorflow import check_keras_distill

            check_keras_distill(path, fmt, config)
        elif student is not None and Path(student).is_file():  # not a .pt2 archive: exit 2 before any work
            from modelforge.model.formats import check_bytes

            check_bytes(Path(student), ".pt2", role="student")

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        if artifact.format == "keras":
            return self._run_keras(artifact, ctx)
        from modelforge.distillation.run import run_distillation
        from modelforge.model.torch.loading import load_module

        with warnings.catch_warnings():  # torch's deprecation chatter: a pass never prints
            warnings.simplefilter("ignore")
            teacher = load_module(artifact)
            path, record = run_distillation(teacher, self.config, ctx, ctx.workdir)
        from modelforge.training.checkpoints import keep_final, remove_default

        folder, named = Path(record["checkpoints"]), self.config.checkpoint_dir is not None
        kept = keep_final(folder / "student", ("best.pt", "last.pt"), ctx.workdir / "kept", named=named)
        remove_default(folder, named)
        if not named:  # the cache's folder is gone: the output's checkpoints/ holds what is kept
            record["checkpoints"] = "checkpoints/ in the output" if kept else None
        for key, value in record.items():
            ctx.record(key, value)
        return ModelArtifact(path=path, format="torch-export", io=artifact.io, checkpoints=tuple(Path(k) for k in kept))

    def _run_keras(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        from modelforge.distillation.tensorflow import run_keras_distillation

        path, record, kind = run_keras_distillation(artifact, self.config, ctx)
        for key, value in record.items():
            ctx.record(key, value)
        return ModelArtifact(path=path, format="keras", io=artifact.io, keras_flavor=kind)
