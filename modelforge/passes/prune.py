"""`prune`: magnitude (unstructured), structured channel or 2:4 pruning of a PyTorch model, with fine-tuning;
Keras 2 models are pruned with TF-MOT (magnitude, 2:4) in modelforge.pruning.tensorflow; Hugging Face encoder
folders lose attention heads and FFN neurons (modelforge.pruning.huggingface) and stay Hugging Face folders.

Accepts a `.pt2` program (rebuilt into real nn layers, modelforge.model.torch.rebuild) or a factory-built module;
produces a `.pt2` program. The pipeline converts it to ONNX for the evaluation and for quantization after it.
This module only adapts: the Config's fields are modelforge.pruning.config's, the procedure is
modelforge.pruning.run's (and .tensorflow's), the training modelforge.training's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from modelforge.model.artifact import ModelArtifact
from modelforge.passes import register
from modelforge.passes.base import Pass, PassConfig, PassContext
from modelforge.pruning import config as pruning_config


class PruneConfig(pruning_config.PruneConfig, PassConfig):
    pass  # the fields and their checks are pruning's; PassConfig makes it a pass Config (no docstring: schema)


@register
class Prune(Pass):
    name = "prune"
    description = (
        "Prune a PyTorch model (structured channels, magnitude or 2:4) or a Keras 2 model (TF-MOT), and fine-tune it."
    )
    accepts = ("torch-export", "torch-module", "keras", "huggingface")
    produces = "torch-export"
    # Keras models are pruned with TF-MOT and stay Keras (model.h5); Hugging Face folders stay folders.
    produces_by_input = {"keras": "keras", "huggingface": "huggingface"}
    needs_train_data = True
    Config = PruneConfig

    def run(self, artifact: ModelArtifact, ctx: PassContext) -> ModelArtifact:
        data = {"train": ctx.train, "evaluation": ctx.evaluation, "seed": ctx.seed, "workdir": ctx.workdir}
        if artifact.format == "keras":
            from modelforge.pruning.tensorflow import prune_keras

            result = prune_keras(artifact, self.config, **data, progress=ctx.progress)
            pruned = ModelArtifact(path=result.path, format="keras", io=artifact.io, keras_flavor="tf_keras")
        elif artifact.format == "huggingface":
            from modelforge.model.huggingface.load import load_hf_model
            from modelforge.pruning.huggingface import run_hf_pruning
            from modelforge.training.checkpoints import checkpoint_dir

            checkpoints = checkpoint_dir(self.config.checkpoint_dir, ctx.output_dir, ctx.workdir)
            model = load_hf_model(artifact.huggingface, folder=artifact.path)
            result = run_hf_pruning(model, self.config, **data, checkpoints=checkpoints, progress=ctx.progress)
            pruned = ModelArtifact(
                path=result.path, format="huggingface", huggingface=artifact.huggingface, checkpoints=result.checkpoints
            )
        else:
            from modelforge.model.torch.loading import load_module
            from modelforge.pruning.run import run_pruning
            from modelforge.training.checkpoints import checkpoint_dir

            checkpoints = checkpoint_dir(self.config.checkpoint_dir, ctx.output_dir, ctx.workdir)
            with warnings.catch_warnings():  # torch's deprecation chatter: a pass never prints
                warnings.simplefilter("ignore")
                module = load_module(artifact)
                result = run_pruning(module, self.config, **data, checkpoints=checkpoints, progress=ctx.progress)
            pruned = ModelArtifact(
                path=result.path, format="torch-export", io=artifact.io, checkpoints=result.checkpoints
            )
        for key, value in result.figures.items():
            ctx.record(key, value)
        return pruned

    @classmethod
    def check_source(cls, path: Path, fmt: str, config: dict) -> None:
        """Before any work: a Keras source TF-MOT cannot prune (Keras 3, SavedModel, structured) is refused."""
        if fmt in ("keras", "savedmodel"):
            from modelforge.pruning.tensorflow import check_keras_source

            check_keras_source(path, fmt, config.get("method", "structured"), bool(config.get("resume")))
