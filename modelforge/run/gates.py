"""Gates: which a run is judged on (the recipe's plus defaults), whether it can measure them, and the verdict.

The gate metrics themselves (summary figure, direction, default thresholds) are one table,
`modelforge.recipe.schema.GATE_METRICS`; this module applies it. report/ only renders the records made here.

Default gates: a run the user gave no gate still fails when its result is broken. A quantized or exported model
must behave like the original (sanity: top-1 agreement for classifier-like outputs, output cosine otherwise); a
pruned model or a distilled student must keep most of the original's accuracy (or agreement, without labels). A
gate the user sets for the same metric replaces the default; `gates.default_gates: false` (`--no-default-gates`)
turns the defaults off. Defaults are decided before the passes run, from the model's output signature, because
they also steer the quantize pass's fallback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from modelforge.errors import InputError
from modelforge.recipe.schema import GATE_METRICS, GATES, GatesConfig, Recipe

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.run.inputs import Inputs

# Sanity gates for passes that must not change what the model computes (quantize, export, convert).
DEFAULT_MIN_AGREEMENT = GATES["min_agreement"].sanity_default
DEFAULT_MIN_COSINE = GATES["min_cosine"].sanity_default
# Training passes (prune, distill) change the model on purpose: they keep a stated share of its behaviour.
TRAINING_MAX_ACCURACY_DROP = GATES["max_accuracy_drop"].training_default  # pp of top-1 accuracy, with labels
TRAINING_MIN_AGREEMENT = GATES["min_agreement"].training_default  # without labels, classifier-like outputs
TRAINING_MIN_COSINE = GATES["min_cosine"].training_default  # without labels, other outputs
TRAINING_PASSES = ("prune", "distill")
# Metric gates a default may set (min_speedup and SLOs are never defaults: they depend on the machine).
THRESHOLD_KEYS = tuple(m.name for m in GATE_METRICS if m.kind == "behaviour")
# What to do when a gate's figure cannot be measured, by what it needs.
NEEDS_HINTS = {
    "labels": "pass --eval-data with labels, or gate on --min-agreement / --min-cosine",
    "pairs": "pass --eval-data with a second text column (--text-pair-column), or gate on --min-cosine",
}


def classifier_like(io: Any) -> bool:
    """The first output is [batch, classes > 1] (the output top-1 agreement is measured on)."""
    outputs = getattr(io, "outputs", None) or []
    if not outputs:
        return False
    shape = list(outputs[0].shape)
    return len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 1


def default_gates(io: Any, pass_names: Iterable[str], has_labels: bool, token_labels: bool = False) -> dict[str, float]:
    """The default thresholds for a run of these passes on a model with this signature. `token_labels`: the
    labels are [N, L] tags of an [N, L, C] output, whose accuracy (token accuracy) is measured as a classifier's."""
    names = set(pass_names)
    classifier = classifier_like(io)
    if names & set(TRAINING_PASSES):
        if has_labels and (classifier or token_labels):
            return {"max_accuracy_drop": TRAINING_MAX_ACCURACY_DROP}
        return {"min_agreement": TRAINING_MIN_AGREEMENT} if classifier else {"min_cosine": TRAINING_MIN_COSINE}
    if not classifier:
        return {"min_cosine": DEFAULT_MIN_COSINE}
    # Agreement covers the first output only: a model with more outputs is also held to cosine over all of them.
    gates = {"min_agreement": DEFAULT_MIN_AGREEMENT}
    if len(io.outputs) > 1:
        gates["min_cosine"] = DEFAULT_MIN_COSINE
    return gates


def resolve_gates(
    gates: GatesConfig, io: Any, pass_names: Iterable[str], has_labels: bool, token_labels: bool = False
) -> ResolvedGates:
    """The recipe's gates with the defaults filled in where the user set no gate of that metric."""
    if not gates.default_gates:
        return ResolvedGates(gates, frozenset())
    chosen = default_gates(io, pass_names, has_labels, token_labels)
    defaults = {k: v for k, v in chosen.items() if getattr(gates, k) is None}
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


def run_gates(recipe: Recipe, inputs: Inputs, pass_specs: list[tuple[Any, type]]) -> ResolvedGates:
    """The recipe's gates plus the default sanity gates, decided from the original's outputs."""
    if inputs.eval_data is None:  # an export without data: nothing to judge, and the run says it skipped it
        return ResolvedGates(recipe.gates, frozenset())
    labels = inputs.eval_data.labels()
    token_labels = labels is not None and labels.ndim == 2  # checked against the output's rank (run.inputs)
    names = [cls.name for _, cls in pass_specs]
    return resolve_gates(recipe.gates, inputs.baseline.io, names, labels is not None, token_labels)


def check_gates_measurable(recipe: Recipe, eval_data: BoundDataset | None, import_code: bool = True) -> None:
    """Every gate the recipe sets can be measured by this run: refused before any pass runs, not after."""
    for metric in GATE_METRICS:
        if getattr(recipe.gates, metric.name) is None:
            continue
        if metric.needs == "labels" and (eval_data is None or eval_data.labels() is None):
            raise InputError(f"gate {metric.name} needs eval data with a `labels` array", hint=NEEDS_HINTS["labels"])
        if metric.needs == "pairs" and (eval_data is None or not getattr(eval_data.dataset, "pair_count", 0)):
            raise InputError(f"gate {metric.name} needs eval data with sentence pairs", hint=NEEDS_HINTS["pairs"])
        if metric.needs == "text":  # a language model's run (run.llm) measures these; no other run does
            raise InputError(
                f"gate {metric.name} is for language models (a *ForCausalLM Hugging Face folder with --eval-data text)"
            )
        if metric.needs == "latency" and recipe.evaluate.skip_latency:
            raise InputError(f"gate {metric.name} needs latency: evaluate.skip_latency is set")
    if recipe.evaluate.slo is not None and recipe.evaluate.skip_latency:
        raise InputError("evaluate.slo needs latency: evaluate.skip_latency is set")
    if recipe.evaluate.custom_metrics and import_code:  # a dry run never imports user code
        from modelforge.evaluate.custom import load_metric

        for spec in recipe.evaluate.custom_metrics:  # fail before any pass runs, not after
            load_metric(spec)


def slo_gate_plan(recipe: Recipe) -> dict[str, Any]:
    """For `--dry-run`: the SLO's gates, when the SLO is one."""
    slo = recipe.evaluate.slo
    if slo is None or not slo.gate:
        return {}
    limits = (("slo_latency_p99_ms", slo.latency_p99_ms), ("slo_latency_p50_ms", slo.latency_p50_ms))
    return {name: f"{limit:g} ms at batch {slo.batch_size}" for name, limit in limits if limit is not None}


def evaluate_gates(
    gates: GatesConfig, summary: dict[str, Any], defaults: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Each configured gate with its threshold, the measured value and the verdict (a missing value fails);
    `defaults`: the gates that are the tool's defaults rather than the user's (`"default": true`)."""
    results = []
    for metric in GATE_METRICS:
        threshold = getattr(gates, metric.name)
        if threshold is None:
            continue
        value = summary.get(metric.summary_key)
        results.append(
            {
                "name": metric.name,
                "metric": metric.summary_key,
                "threshold": threshold,
                "value": value,
                "passed": metric.passes(value, threshold),
                "default": metric.name in defaults,
            }
        )
    return results


def slo_gates(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """One gate per SLO limit, on the result model at the SLO's batch size (an unmeasured value fails)."""
    latency = evaluation.get("latency") or {}
    slo = latency.get("slo")
    if not slo:
        return []
    result = slo["models"]["result"]
    values = result.get("judged_ms") or result["values_ms"] or {}
    bound = ", 95% upper bound" if result.get("judged_ms") else ""
    gates = []
    for stat, limit in slo["limits_ms"].items():
        value = values.get(stat)
        gates.append(
            {
                "name": f"slo_latency_{stat}",
                "metric": f"result {stat.removesuffix('_ms')} ms at batch {slo['batch_size']}{bound}",
                "threshold": limit,
                "value": value,
                "passed": value is not None and value <= limit,
                "default": False,
            }
        )
    return gates


def judge(
    recipe: Recipe, resolved: ResolvedGates, summary: dict[str, Any], evaluation: dict[str, Any]
) -> list[dict[str, Any]]:
    """The run's gate records: the metric gates, then the SLO's when the SLO is a gate."""
    gates = evaluate_gates(resolved.config, summary, resolved.defaults)
    if recipe.evaluate.slo is not None and recipe.evaluate.slo.gate:
        gates += slo_gates(evaluation)
    return gates
