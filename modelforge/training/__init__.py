"""The one training loop, shared by pruning's fine-tuning and distillation.

`TrainConfig` (what to train with), `load_tensors` (bound data sets in memory as tensors), `train` (epochs,
optimizer, LR schedule, early stopping on eval accuracy, best and per-epoch checkpoints, resume, seeded and
deterministic on CPU, CUDA when present) and `accuracy`. torch is imported inside the functions.
"""

from modelforge.training.accuracy import accuracy
from modelforge.training.config import TrainConfig
from modelforge.training.loop import TrainResult, device_for, load_tensors, train

__all__ = ["TrainConfig", "TrainResult", "accuracy", "device_for", "load_tensors", "train"]
