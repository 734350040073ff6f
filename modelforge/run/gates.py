"""Default gates: a run the user gave no gate still fails when its result is broken.

A quantized or exported model must behave like the original (sanity: top-1 agreement for classifier-like
outputs, output cosine otherwise); a pruned model or a distilled student must keep most of the original's
accuracy (or agreement, without labels). A gate the user sets for the same metric replaces the default;
`gates.default_gates: false` (`--no-default-gates`) turns the defaults off. Defaults are decided before the
passes run, from the model's output signature, because they also steer the quantize pass's fallback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modelforge.recipe.schema import GatesConfig

# Sanity gates for passes that must not change what the model computes (quantize, export, convert).
DEFAULT_MIN_AGREEMENT = 0.99
DEFAULT_MIN_COSINE = 0.99
# Training passes (prune, distill) change the model on purpose: they keep a stated share of its behaviour.
TRAINING_MAX_ACCURACY_DROP = 5.0  # percentage points of top-1 accuracy, with labels
TRAINING_MIN_AGREEMENT = 0.9  # without labels, classifier-like outputs
TRAINING_MIN_COSINE = 0.9  # without labels, other outputs
TRAINING_PASSES = ("prune", "distill")
# Metric gates a default may set (min_speedup and SLOs are never defaults: they depend on the machine).
THRESHOLD_KEYS = ("max_accuracy_drop", "min_agreement", "min_cosine")


def classifier_like(io: Any) -> bool:
    """The first output is [batch, classes > 1] (the output top-1 agreement is measured on)."""
    outputs = getattr(io, "outputs", None) or []
    if not outputs:
        return False
    shape = list(outputs[0].shape)
    return len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 1


def default_gates(io: Any, pass_names: Iterable[str], has_labels: bool) -> dict[str, float]:
    """The default thresholds for a run of these passes on a model with this signature."""
    names = set(pass_names)
    classifier = classifier_like(io)
    if names & set(TRAINING_PASSES):
        if has_labels and classifier:
            return {"max_accuracy_drop": TRAINING_MAX_ACCURACY_DROP}
        return {"min_agreement": TRAINING_MIN_AGREEMENT} if classifier else {"min_cosine": TRAINING_MIN_COSINE}
    if not classifier:
        return {"min_cosine": DEFAULT_MIN_COSINE}
    # Agreement covers the first output only: a model with more outputs is also held to cosine over all of them.
    gates = {"min_agreement": DEFAULT_MIN_AGREEMENT}
    if len(io.outputs) > 1:
        gates["min_cosine"] = DEFAULT_MIN_COSINE
    return gates


def resolve_gates(gates: GatesConfig, io: Any, pass_names: Iterable[str], has_labels: bool) -> ResolvedGates:
    """The recipe's gates with the defaults filled in where the user set no gate of that metric."""
    if not gates.default_gates:
        return ResolvedGates(gates, frozenset())
    defaults = {k: v for k, v in default_gates(io, pass_names, has_labels).items() if getattr(gates, k) is None}
    return ResolvedGates(gates.model_copy(update=defaults), frozenset(defaults))


class ResolvedGates:
    """The gates a run is judged on (`config`, a GatesConfig the passes read) and which of them are defaults."""

    def __init__(self, config: GatesConfig, defaults: frozenset[str]):
        self.config = config
        self.defaults = defaults

    def plan(self) -> dict[str, Any]:
        """For `--dry-run`: each gate's threshold, defaults marked."""
        return {
            k + (" (default)" if k in self.defaults else ""): v
            for k, v in self.config.model_dump().items()
            if v is not None and k != "default_gates"
        }
