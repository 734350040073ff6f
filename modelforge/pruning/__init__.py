"""Pruning: magnitude (unstructured), structured channels (Torch-Pruning's dependency graph) and 2:4.

Each method works in place on a module of real nn layers (see modelforge.model.torch.rebuild) and returns what it
did per layer. `config.PruneConfig` says what to do; the procedure the `prune` pass runs is `run.run_pruning`
(Keras 2: `tensorflow.prune_keras`), data and a Progress in, a `PruneResult` out. torch and torch_pruning are
imported inside the functions.
"""

from modelforge.pruning.layers import default_skipped, prunable_layers, resolve_skip
from modelforge.pruning.magnitude import apply_masks, magnitude_masks, sparsity_report
from modelforge.pruning.schedule import polynomial_targets
from modelforge.pruning.semi_structured import masks_2_4, verify_2_4

__all__ = [
    "apply_masks",
    "default_skipped",
    "magnitude_masks",
    "masks_2_4",
    "polynomial_targets",
    "prunable_layers",
    "resolve_skip",
    "sparsity_report",
    "verify_2_4",
]
