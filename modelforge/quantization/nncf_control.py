"""NNCF's accuracy fallback, for both places an NNCF candidate is judged (`--target openvino`: `ov_schemes`;
`--target auto`: `auto_target`): when the candidate misses the run's gates, `nncf.quantize_with_accuracy_control`
rebuilds it, scored by those gates on the eval data, bounded in reverted groups and seconds (see `ov_schemes`'
docstring for why this beats widening NNCF's ignored_scope by modelforge's own ranking)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelforge.data import BoundDataset
    from modelforge.quantization.config import QuantizeConfig
    from modelforge.quantization.fallback import Budget, OutputJudge
    from modelforge.quantization.nncf_scheme import NncfBuild
    from modelforge.quantization.state import QuantizeInputs


def nncf_accuracy_control(
    original: Path, config: QuantizeConfig, inputs: QuantizeInputs, build: NncfBuild, name: str
) -> NncfRetry | None:
    """NNCF's accuracy fallback for `build`; None when the fallback is off or there is no eval data."""
    if not config.fallback or inputs.evaluation is None:
        return None
    return NncfRetry(original, config, inputs, build, name)


class NncfRetry:
    """`nncf.quantize_with_accuracy_control` scored by the run's own gates, on `sensitivity_samples` eval samples
    (as modelforge's fallback ranks on them), with the same float nodes; the result is judged on the whole eval
    data afterwards. Bounded: at most `fallback_max_nodes` reverted groups (default
    `nncf_scheme.MAX_REVERTED_GROUPS`) and `time_budget` seconds (default `CONTROL_SECONDS`); past the time,
    NNCF's first model stays (the call returns None). Every outcome is a note in the NNCF record."""

    def __init__(self, original: Path, config: QuantizeConfig, inputs: QuantizeInputs, build: NncfBuild, name: str):
        from modelforge.quantization.nncf_scheme import CONTROL_SECONDS, MAX_REVERTED_GROUPS

        self.original, self.config, self.inputs, self.build, self.name = original, config, inputs, build, name
        self.steps = config.fallback_max_nodes or MAX_REVERTED_GROUPS
        self.seconds = config.time_budget if config.time_budget is not None else CONTROL_SECONDS
        self.bounds = f"at most {self.steps} reverted groups and {self.seconds:g} s"

    def __call__(self, judge: OutputJudge) -> Path | None:
        import time

        from modelforge.quantization.nncf_scheme import AccuracyControl, AccuracyControlStopped, nncf_candidate

        config, inputs, build = self.config, self.inputs, self.build
        control = AccuracyControl(
            _validation_items(self.original, inputs.evaluation, config.sensitivity_samples, judge),
            _gate_score(inputs.budget, judge.threads),
            max_iterations=self.steps,
            deadline=time.monotonic() + self.seconds,
        )
        try:
            with inputs.progress.task("NNCF: accuracy control (reverting the most harmful quantizers)"):
                restored = nncf_candidate(
                    self.original, config, inputs, inputs.workdir / "nncf-fallback", name=self.name, control=control
                )
        except AccuracyControlStopped as stop:
            build.notes.append(
                f"missed the gates; nncf.quantize_with_accuracy_control ({self.bounds}) stopped: {stop}; NNCF's"
                " first model kept (--time-budget sets the time)"
            )
            inputs.progress.log(f"quantize: NNCF accuracy control stopped: {stop} ({self.bounds})")
            return None
        reverted = build.fake_quantize - restored.fake_quantize
        build.notes.append(
            f"missed the gates; nncf.quantize_with_accuracy_control, scored by the run's gates ({self.bounds}),"
            f" reverted {reverted} quantizer(s)"
        )
        build.fake_quantize, build.seconds = restored.fake_quantize, build.seconds + restored.seconds
        return restored.xml

    def worth_it(self, first_p50: float, rivals: dict[str, float]) -> bool:
        """Reverting quantizers only slows a model down: when NNCF's first model (all quantizers in) is not
        faster than a rival that meets the gates (name -> p50 ms), no model accuracy control builds can win,
        and its minutes are skipped (the note says so)."""
        if not rivals:
            return True
        rival = min(rivals, key=rivals.__getitem__)
        if first_p50 < rivals[rival]:
            return True
        self.build.notes.append(
            f"missed the gates; accuracy control not run: NNCF's first model (p50 {first_p50:.3f} ms) is already no"
            f" faster than {rival} (p50 {rivals[rival]:.3f} ms), which meets them, and reverting quantizers only"
            " slows it"
        )
        self.inputs.progress.log(f"quantize: NNCF accuracy control skipped: its first model is no faster than {rival}")
        return False


def _validation_items(original: Path, data: BoundDataset, samples: int, judge: OutputJudge) -> list[tuple]:
    """(inputs, labels, float outputs) per eval batch of the first `samples` samples."""
    from modelforge.runtimes.onnxruntime import create_session

    subset = data.window(0, min(samples, data.num_samples))
    labels = subset.labels()
    session = create_session(original, judge.threads, stage=judge.stage)
    items, seen = [], 0
    for feeds in subset.batches(judge.batch):
        n = len(next(iter(feeds.values())))
        items.append((feeds, None if labels is None else labels[seen : seen + n], session.run(None, feeds)))
        seen += n
    return items


def _gate_score(budget: Budget, threads: int) -> Callable[[Any, Any], tuple[float, list[float]]]:
    """NNCF's validation function: 1 within the run's gates, below 1 by the shortfall (NNCF divides by the float
    model's score, so never 0), for the items given and for each of them."""
    from modelforge.measure.metrics import ComparisonAccumulator
    from modelforge.quantization.fallback import gate_metrics
    from modelforge.runtimes.openvino import OpenVinoBackend

    def score(metrics: dict[str, Any]) -> float:
        return 1.0 if not budget.misses(metrics) else 1.0 - max(budget.shortfall(metrics), 1e-6)

    def validate(compiled: Any, items: Any) -> tuple[float, list[float]]:
        backend = OpenVinoBackend(compiled, "int8", threads)
        whole, each, seen, labelled = ComparisonAccumulator(), [], 0, False
        for feeds, labels, reference in items:
            outputs = backend.run(feeds)
            labelled = labels is not None
            whole.update(reference, outputs, labels)
            one = ComparisonAccumulator()
            one.update(reference, outputs, labels)
            n = len(next(iter(feeds.values())))
            each.append(score(gate_metrics(one, labelled, n)))
            seen += n
        return score(gate_metrics(whole, labelled, seen)), each

    return validate
