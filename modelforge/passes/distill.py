"""`distill`: train a small student to imitate the pipeline's model (the teacher); the student ships.

Accepts the teacher as a `.pt2` program (rebuilt into real nn layers) or a factory-built module; produces the
student as a `.pt2` program, which the pipeline converts to ONNX for the evaluation (teacher vs student, same
runtime, interleaved) and for quantization after it. A Keras teacher (`.keras`/`.h5`) is distilled into a Keras
student file instead (modelforge.distillation.tensorflow); the student stays Keras and is converted to ONNX the
same way. A Hugging Face encoder folder is distilled the DistilBERT way (the student is the teacher with fewer
layers, `student_layers`; modelforge.distillation.huggingface) into a Hugging Face folder. This module only
adapts: the Config's fields are modelforge.distillation.config's, the procedure is
modelforge.distillation.run's (and .tensorflow's).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from modelforge.distillation import config as distill_config
from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassConfig, PassContext


class DistillConfig(distill_config.DistillConfig, PassConfig):
    pass  # the fields and their checks are distillation's; PassConfig makes it a pass Config (no docstring: schema)


@register
class Distill(Pass):
    name = "distill"
    description = "Distil the model (teacher) into a smaller student trained to imitate it."
    accepts = ("torch-export", "torch-module", "keras", "huggingface")
    produces = "torch-export"
    # A Keras teacher is distilled into a Keras student (model.keras/.h5), a Hugging Face one into a folder.
    produces_by_input = {"keras": "keras", "huggingface": "huggingface"}
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
        from modelforge.distillation.run import check_source

        check_source(path, fmt, config)

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        data = {"train": ctx.train, "evaluation": ctx.evaluation, "seed": ctx.seed, "workdir": ctx.workdir}
        if artifact.format == "keras":
            from modelforge.distillation.tensorflow import run_keras_distillation

            result = run_keras_distillation(artifact, self.config, **data, progress=ctx.progress)
        elif artifact.format == "huggingface":
            from modelforge.distillation.huggingface import run_hf_distillation
            from modelforge.model.huggingface.load import load_hf_model
            from modelforge.training.checkpoints import checkpoint_dir

            checkpoints = checkpoint_dir(self.config.checkpoint_dir, ctx.output_dir, ctx.workdir)
            teacher = load_hf_model(artifact.huggingface, folder=artifact.path)
            result = run_hf_distillation(teacher, self.config, **data, checkpoints=checkpoints, progress=ctx.progress)
            for key, value in result.figures.items():
                ctx.record(key, value)
            return ModelArtifact(
                path=result.path, format="huggingface", huggingface=artifact.huggingface, checkpoints=result.checkpoints
            )
        else:
            from modelforge.distillation.run import run_distillation
            from modelforge.model.torch.loading import load_module
            from modelforge.training.checkpoints import checkpoint_dir

            checkpoints = checkpoint_dir(self.config.checkpoint_dir, ctx.output_dir, ctx.workdir)
            with warnings.catch_warnings():  # torch's deprecation chatter: a pass never prints
                warnings.simplefilter("ignore")
                teacher = load_module(artifact)
                result = run_distillation(teacher, self.config, **data, checkpoints=checkpoints, progress=ctx.progress)
        for key, value in result.figures.items():
            ctx.record(key, value)
        if result.keras_flavor is not None:
            return ModelArtifact(path=result.path, format="keras", io=artifact.io, keras_flavor=result.keras_flavor)
        return ModelArtifact(path=result.path, format="torch-export", io=artifact.io, checkpoints=result.checkpoints)
