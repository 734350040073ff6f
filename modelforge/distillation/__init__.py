"""Teacher-student distillation: losses (KD at temperature T, hints with learned 1x1 projections, MSE/cosine on
outputs), student derivation (a .pt2, a factory, or the teacher narrowed by structured pruning), the per-sample
teacher-output cache, the config (`config.DistillConfig`) and the procedure the `distill` pass runs
(`run.run_distillation`; Keras: `tensorflow.run_keras_distillation`), data and a Progress in, a `DistillResult` out.

Training goes through modelforge.training (the loop shared with pruning, data-parallel under torchrun).
torch is imported inside the functions.
"""

from modelforge.distillation.losses import DistillationLoss, kd_loss, output_loss

__all__ = ["DistillationLoss", "kd_loss", "output_loss"]
